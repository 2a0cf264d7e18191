#!/usr/bin/env bash
# Every scenario against every target with the same load generator (`switchboard
# bench`), medians of RUNS runs, and one table with the ratios switchboard/peer.
#
#   bench/compare.sh                      # 3 runs of 5 s each, 15,000 idle connections
#   RUNS=5 SECS=10 CONNS=20000 bench/compare.sh
#   bench/compare.sh -y                   # install what is missing without asking (or YES=1)
#
# Offers to install redis-server and nats-server from the distribution's packages if
# missing (asks first, unless -y or YES=1). Every server runs on a temporary store, so
# `send` runs with --scratch.
# Every server listens on loopback only. switchboard runs as `serve` does by default
# (one thread on a machine of two cores or fewer; SB_THREADS=N sets --threads); the
# echo floor is a one-thread tokio server the bench starts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-15000}
YES=${YES:-0}
case ${1:-} in
    -y | --yes) YES=1 ;;
    "") ;;
    *) echo "usage: bench/compare.sh [-y]" >&2; exit 2 ;;
esac
THREADS=()
[ -n "${SB_THREADS:-}" ] && THREADS=(--threads "$SB_THREADS")

if ! command -v redis-server >/dev/null || ! command -v nats-server >/dev/null; then
    if [ "$YES" != 1 ]; then
        [ -t 0 ] || { echo "redis-server and nats-server are needed: install them, or run with -y (YES=1) to let this script install them with apt-get" >&2; exit 1; }
        read -r -p "redis-server and nats-server are missing; install them with apt-get? [y/N] " answer
        case $answer in [yY]*) ;; *) echo "not installing; nothing compared" >&2; exit 1 ;; esac
    fi
    echo "installing redis-server and nats-server..." >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get install -y redis-server nats-server >/dev/null ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y redis-server nats-server >/dev/null; }
fi
cargo build --release  # cargo shows its progress: the first build takes minutes
SB=target/release/switchboard
DIR=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# Each server is started fresh for each memory run: a server that has already served
# load reuses freed memory for new connections, and would look cheaper than it is.
start_servers() {
    rm -rf "$DIR/state" && mkdir -p "$DIR/state"
    "$SB" serve "${THREADS[@]}" --db "$DIR/state/sb.db" --listen 127.0.0.1:12400 2>"$DIR/sb.log" &
    SB_PID=$!
    # appendfsync always: an LPUSH is answered once it is on disk, like switchboard's send.
    redis-server --port 12401 --bind 127.0.0.1 --protected-mode no --dir "$DIR/state" --save '' \
        --appendonly yes --appendfsync always --maxclients $((CONNS + 1000)) >/dev/null &
    REDIS_PID=$!
    nats-server -a 127.0.0.1 -p 12402 >"$DIR/nats.log" 2>&1 &
    NATS_PID=$!
    pids=("$SB_PID" "$REDIS_PID" "$NATS_PID")
    sleep 1
}
stop_servers() {
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
}

addr() { case $1 in switchboard) echo 127.0.0.1:12400;; redis) echo 127.0.0.1:12401;; nats) echo 127.0.0.1:12402;; esac; }
pid() { case $1 in switchboard) echo $SB_PID;; redis) echo $REDIS_PID;; nats) echo $NATS_PID;; esac; }

# run SCENARIO TARGET ARGS...: one JSON report per line into $DIR/results
run() {
    local scenario=$1 target=$2; shift 2
    local where=()
    [ "$target" != echo ] && where=(--addr "$(addr "$target")")
    "$SB" bench "$scenario" --target "$target" "${where[@]}" --json "$@" >>"$DIR/results" ||
        echo "{\"scenario\":\"$scenario\",\"target\":\"$target\",\"failed\":true}" >>"$DIR/results"
}

# order RUN TARGET...: the targets, reversed on every other run, so that none is always
# the first to meet a disk or a cache in the state the previous one left.
order() {
    local k=$1; shift
    if ((k % 2)); then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi
}

start_servers
for k in $(seq "$RUNS"); do
    echo "run $k of $RUNS..." >&2
    for t in $(order "$k" switchboard redis nats echo); do run rr "$t" -n 32 -P 1 --duration "$SECS"; done
    for t in $(order "$k" switchboard redis nats); do run fanout "$t" -n 50 -W 16 --size 64 --duration "$SECS"; done
    for t in $(order "$k" switchboard redis); do run send "$t" -n 64 --size 64 --duration "$SECS" --scratch; done
done
stop_servers
for k in $(seq "$RUNS"); do
    echo "memory run $k of $RUNS..." >&2
    start_servers
    for t in switchboard redis nats; do run conns "$t" -n "$CONNS" --pid "$(pid "$t")"; done
    run conns echo -n "$CONNS"
    stop_servers
done

python3 - "$DIR/results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(scenario, target, key):
    vals = [r[key] for r in rows if r["scenario"] == scenario and r["target"] == target
            and not r.get("failed") and r.get(key) is not None]
    return statistics.median(vals) if vals else None
plan = [("rr", "32 conns, pipeline 1", "ops_per_sec", "req/s", ["redis", "nats", "echo"]),
        ("fanout", "50 members, 64 B", "ops_per_sec", "deliveries/s", ["redis", "nats"]),
        ("send", "64 senders, durable", "ops_per_sec", "acked sends/s", ["redis"]),
        ("conns", "idle after handshake", "kib_per_conn", "KiB/conn", ["redis", "nats", "echo"])]
print(f"{'scenario':<8} {'load':<22} {'target':<12} {'median':>14} {'p99':>9} {'lost':>5}  switchboard/peer")
for scenario, load, key, unit, peers in plan:
    sb = med(scenario, "switchboard", key)
    for target in ["switchboard"] + peers:
        v = med(scenario, target, key)
        p99 = med(scenario, target, "p99_us")
        lost = med(scenario, target, "lost")
        shown = "failed" if v is None else (f"{v:,.2f} {unit}" if key == "kib_per_conn" else f"{v:,.0f}")
        ratio = ""
        if target != "switchboard" and v and sb:
            # For memory, lower is better: the ratio is still switchboard/peer.
            ratio = f"{sb / v:.2f}x"
        print(f"{scenario:<8} {load:<22} {target:<12} {shown:>14} {'' if p99 is None else f'{p99/1000:.2f}ms':>9} "
              f"{'' if lost is None else int(lost):>5}  {ratio}")
PY
