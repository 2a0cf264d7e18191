#!/usr/bin/env bash
# Acknowledged sends per second with 1, 8 and 64 senders: switchboard with its store on
# a thread of its own (`--threads 2`), group commit off and on; on one thread
# (`--threads 1`, the store committing on the server's only thread, as Redis does); and
# Redis 7 LPUSH with appendfsync always, all driven by the same
# load generator (`switchboard bench send`) and interleaved run by run so that all
# see the same disk. Every other run takes them in reverse order, as
# bench/compare.sh does, so that no server always follows the same one (group commit
# off syncs thousands of times a second) or always comes first. Prints medians of RUNS
# runs.
#
#   bench/durability.sh            # needs redis-server on PATH
#   RUNS=5 SECS=4 bench/durability.sh
#   NS=64 bench/durability.sh      # only 64 senders
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-4}
DIR=$(mktemp -d)
SB=target/release/switchboard
cargo build --release  # cargo shows its progress: the first build takes minutes
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

"$SB" serve --db "$DIR/off.db" --listen 127.0.0.1:12101 --threads 2 --commit-batch 1 2>/dev/null & pids+=($!)
"$SB" serve --db "$DIR/on.db" --listen 127.0.0.1:12102 --threads 2 2>/dev/null & pids+=($!)
"$SB" serve --db "$DIR/one.db" --listen 127.0.0.1:12104 --threads 1 2>/dev/null & pids+=($!)
redis-server --port 12103 --bind 127.0.0.1 --protected-mode no --dir "$DIR" \
    --appendonly yes --appendfsync always --save '' >/dev/null & pids+=($!)
sleep 1

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The servers above run on temporary stores: --scratch lets `send` leave its mail there.
rate() { "$SB" bench send --target "$1" --addr "$2" -n "$3" --duration "$SECS" --scratch --json |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))'; }

printf '%-8s %12s %12s %12s %12s %9s %10s\n' senders "batch off/s" "batch on/s" \
    "1 thread/s" "redis/s" "on/redis" "1 t/redis"
for n in ${NS:-1 8 64}; do
    off=() on=() one=() rd=()
    for k in $(seq "$RUNS"); do
        if ((k % 2)); then order="off on one redis"; else order="redis one on off"; fi
        for t in $order; do
            case $t in
                off) off+=("$(rate switchboard 127.0.0.1:12101 "$n")") ;;
                on) on+=("$(rate switchboard 127.0.0.1:12102 "$n")") ;;
                one) one+=("$(rate switchboard 127.0.0.1:12104 "$n")") ;;
                redis) rd+=("$(rate redis 127.0.0.1:12103 "$n")") ;;
            esac
        done
    done
    moff=$(printf '%s\n' "${off[@]}" | median)
    mon=$(printf '%s\n' "${on[@]}" | median)
    mone=$(printf '%s\n' "${one[@]}" | median)
    mrd=$(printf '%s\n' "${rd[@]}" | median)
    printf '%-8s %12s %12s %12s %12s %9.2f %10.2f\n' "$n" "$moff" "$mon" "$mone" "$mrd" \
        "$(awk -v a="$mon" -v b="$mrd" 'BEGIN {print a / b}')" \
        "$(awk -v a="$mone" -v b="$mrd" 'BEGIN {print a / b}')"
done
