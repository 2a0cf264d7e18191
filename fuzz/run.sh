#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each) from its seed corpus.
#
#   fuzz/run.sh            # every target, 60 s each
#   fuzz/run.sh 300 lab    # one target, 5 minutes
#
# Needs cargo-fuzz (cargo install cargo-fuzz). On a stable toolchain, RUSTC_BOOTSTRAP
# lets cargo-fuzz pass the sanitizer flags that normally need nightly. A crash leaves
# its input under fuzz/artifacts/<target>/: add it to the decoder's regression tests.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(native text lab)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
for target in "${TARGETS[@]}"; do
    echo "== fuzzing $target for ${SECS}s"
    # New inputs that raise coverage go to a work corpus, not the committed seeds.
    mkdir -p "work/$target"
    cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$SECS" -max_len=70000 -print_final_stats=1 2>&1 |
        grep -E "^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss|==|SUMMARY|Test unit written)" || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "!! $target: crash inputs in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
