#!/usr/bin/env bash
# The load tool's quick mode against a freshly started server, so the tool cannot rot
# (a few seconds; loopback only), with a coarse CPU regression guard. Full runs are
# documented in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec crates/switchboard-bench/smoke.sh "${SWITCHBOARD_BIN:-target/debug/switchboard}" "${BENCH_BIN:-target/debug/switchboard-bench}"
