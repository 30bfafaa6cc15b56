#!/usr/bin/env bash
# One long fuzz campaign, as FUZZING.md records them:
#   fuzz/campaign.sh TARGET RUNS [more libFuzzer flags]
# It builds the targets (cargo-fuzz, libFuzzer; stable Rust with RUSTC_BOOTSTRAP=1, which
# lets it take the nightly flags cargo-fuzz passes), then runs TARGET for RUNS executions,
# niced (the machine is shared), from the committed seeds in fuzz/corpus/TARGET and the
# inputs earlier runs found in fuzz/corpus-work/TARGET (not committed; new finds go there).
# A crash, a panic, an input running over 10 s or 2 GiB stops it with a non-zero status and
# the input in fuzz/artifacts/TARGET/.
#
# FUZZ_BUILD overrides the build flags (default: optimised, debug assertions and overflow
# checks on, no sanitizer: the code is safe Rust, and the targets look for panics, wrong
# answers and hangs; AddressSanitizer would cost 6-10x the executions).
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1
runs=$2
shift 2
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/fuzz/target}
read -r -a build <<<"${FUZZ_BUILD:--O -a -s none}"
mkdir -p "fuzz/corpus-work/$target"
nice -n 10 cargo fuzz build "${build[@]}" "$target"
exec nice -n 10 cargo fuzz run "${build[@]}" "$target" \
  "fuzz/corpus-work/$target" "fuzz/corpus/$target" -- \
  -runs="$runs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 "$@"
