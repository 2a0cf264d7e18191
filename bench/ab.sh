#!/usr/bin/env bash
# Paired A/B of two server command lines on one scenario: short runs taken in turns
# (A then B, then B then A, ...), the ratio B/A of each pair, and their median. On a VM
# whose speed drifts by a third within minutes, a pair measured seconds apart is
# steadier than medians of runs taken minutes apart.
#
#   bench/ab.sh "target/release/switchboard serve --threads 2" "target/release/switchboard serve --threads 1"
#   PAIRS=30 SECS=1 SCENARIO=rr BENCH_ARGS="-n 32 -P 1" bench/ab.sh "CMD A" "CMD B"
#
# Each command gets `--db FILE --listen ADDR` appended; the load generator is this
# checkout's release build, whose `bench` speaks to switchboard.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh \"SERVER COMMAND A\" \"SERVER COMMAND B\"" >&2; exit 2; }
PAIRS=${PAIRS:-20}
SECS=${SECS:-1}
SCENARIO=${SCENARIO:-send}
BENCH_ARGS=${BENCH_ARGS:--n 64}
cargo build --release
SB=target/release/switchboard
DIR=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

# shellcheck disable=SC2086 # the commands are word-split on purpose
$1 --db "$DIR/a.db" --listen 127.0.0.1:12111 2>/dev/null & pids+=($!)
# shellcheck disable=SC2086
$2 --db "$DIR/b.db" --listen 127.0.0.1:12112 2>/dev/null & pids+=($!)
sleep 1
rate() {
    # shellcheck disable=SC2086
    "$SB" bench "$SCENARIO" --addr "127.0.0.1:$1" $BENCH_ARGS --duration "$SECS" --json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))'
}
rate 12111 >/dev/null && rate 12112 >/dev/null # warm-up, not counted
for k in $(seq "$PAIRS"); do
    if ((k % 2)); then a=$(rate 12111); b=$(rate 12112); else b=$(rate 12112); a=$(rate 12111); fi
    echo "$a $b"
done | python3 -c '
import statistics, sys
pairs = [tuple(map(int, line.split())) for line in sys.stdin]
ratios = [b / a for a, b in pairs]
print(f"A median {statistics.median(a for a, _ in pairs):,.0f}/s, "
      f"B median {statistics.median(b for _, b in pairs):,.0f}/s")
print(f"B/A per pair: median {statistics.median(ratios):.3f}, "
      f"B ahead in {sum(r > 1 for r in ratios)} of {len(ratios)} pairs")
'
