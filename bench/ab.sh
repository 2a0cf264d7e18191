#!/usr/bin/env bash
# Paired A/B of two server command lines on one scenario: short runs taken in turns
# (A then B, then B then A, ...), the ratio B/A of each pair, and their median. On a VM
# whose speed drifts by a third within minutes, a pair measured seconds apart is
# steadier than medians of runs taken minutes apart. Beside the ratio it prints each
# server's own CPU time per operation (user + system, from /proc), which the load
# generator sharing the cores cannot tilt.
#
#   bench/ab.sh "target/release/switchboard serve --threads 2" "target/release/switchboard serve --threads 1"
#   PAIRS=30 SECS=1 SCENARIO=rr BENCH_ARGS="-n 32 -P 1" bench/ab.sh "CMD A" "CMD B"
#   PAIRS=5 SCENARIO=burst bench/ab.sh "OLD/switchboard serve" "NEW/switchboard serve"
#   PAIRS=5 SCENARIO=burst BENCH_ARGS="-n 1300 --stall 5" SECS=15 bench/ab.sh "CMD A" "CMD B"
#   SCENARIO=rr BENCH_ARGS="-n 32" BENCH_ARGS_B="-n 32 --ws" PORT_B=12113 \
#     bench/ab.sh "SB serve" "SB serve --http-listen 127.0.0.1:12113"
#
# Each command gets `--db FILE --listen ADDR` appended (fresh stores in a temporary
# directory, so `send` runs with --scratch); the load generator is this checkout's
# release build, whose `bench` speaks to switchboard. `burst` (1300 members unless
# BENCH_ARGS says -n) compares deliveries per second and also prints, per pair, the
# members each server cut; SECS is then how long --stall members stay unread.
# BENCH_ARGS_B and PORT_B measure B another way than A (over a WebSocket on B's HTTP
# listener, say) against the same kind of server; PORT_A points A's runs at another of
# A's ports likewise.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh \"SERVER COMMAND A\" \"SERVER COMMAND B\"" >&2; exit 2; }
PAIRS=${PAIRS:-20}
SECS=${SECS:-1}
SCENARIO=${SCENARIO:-send}
if [ "$SCENARIO" = burst ]; then BENCH_ARGS=${BENCH_ARGS:-}; else BENCH_ARGS=${BENCH_ARGS:--n 64}; fi
BENCH_ARGS_B=${BENCH_ARGS_B:-$BENCH_ARGS}
PORT_A=${PORT_A:-12111}
PORT_B=${PORT_B:-12112}
cargo build --release
SB=target/release/switchboard
DIR=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# shellcheck disable=SC2086 # the commands are word-split on purpose
$1 --db "$DIR/a.db" --listen 127.0.0.1:12111 2>/dev/null & pids+=($!)
# shellcheck disable=SC2086
$2 --db "$DIR/b.db" --listen 127.0.0.1:12112 2>/dev/null & pids+=($!)
sleep 1
SCRATCH=()
[ "$SCENARIO" = send ] && SCRATCH=(--scratch)
# The server's own CPU time so far (user + system), in clock ticks: what a load
# generator sharing the cores cannot tilt, unlike a throughput ratio.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# rate PORT PID ARGS: "ops_per_sec cut stalled_cut cpu_ns_per_op p99_us" of one run (cut
# counts are 0 but for burst)
rate() {
    local before
    before=$(ticks "$2")
    # shellcheck disable=SC2086
    "$SB" bench "$SCENARIO" --addr "127.0.0.1:$1" $3 "${SCRATCH[@]}" --duration "$SECS" --json |
        python3 -c 'import json,sys; r = json.load(sys.stdin)
print(round(r["ops_per_sec"]), r.get("cut", 0), r.get("stalled_cut", 0), r["ops"], r["p99_us"])' |
        { read -r rate cut stalled ops p99
          echo "$rate $cut $stalled $(( ($(ticks "$2") - before) * 1000000000 / $(getconf CLK_TCK) / (ops > 0 ? ops : 1) )) $p99"; }
}
rate_a() { rate "$PORT_A" "${pids[0]}" "$BENCH_ARGS"; }
rate_b() { rate "$PORT_B" "${pids[1]}" "$BENCH_ARGS_B"; }
rate_a >/dev/null && rate_b >/dev/null # warm-up, not counted
for k in $(seq "$PAIRS"); do
    if ((k % 2)); then
        a=$(rate_a); b=$(rate_b)
    else
        b=$(rate_b); a=$(rate_a)
    fi
    echo "$a $b"
    if [ "$SCENARIO" = burst ]; then echo "pair $k: A $a, B $b (deliveries/s, cut, stalled cut, CPU ns per delivery, p99 µs)" >&2; fi
done | python3 -c '
import statistics, sys
runs = [list(map(int, line.split())) for line in sys.stdin]
pairs = [(r[0], r[5]) for r in runs]
ratios = [b / a if a else float("inf") for a, b in pairs]
print(f"A median {statistics.median(a for a, _ in pairs):,.0f}/s, "
      f"B median {statistics.median(b for _, b in pairs):,.0f}/s")
print(f"B/A per pair: median {statistics.median(ratios):.3f}, "
      f"B ahead in {sum(r > 1 for r in ratios)} of {len(ratios)} pairs")
print(f"server CPU per operation: A median {statistics.median(r[3] for r in runs):,.0f} ns, "
      f"B median {statistics.median(r[8] for r in runs):,.0f} ns")
p99s = [r[9] / r[4] if r[4] else float("inf") for r in runs]
print(f"p99 latency: A median {statistics.median(r[4] for r in runs):,.0f} us, "
      f"B median {statistics.median(r[9] for r in runs):,.0f} us; "
      f"B/A per pair: median {statistics.median(p99s):.3f}")
if sys.argv[1] == "burst":
    print(f"members cut: A median {statistics.median(r[1] for r in runs):,.0f}, "
          f"B median {statistics.median(r[6] for r in runs):,.0f}; "
          f"stalled members cut: A median {statistics.median(r[2] for r in runs):,.0f}, "
          f"B median {statistics.median(r[7] for r in runs):,.0f}")
' "$SCENARIO"
