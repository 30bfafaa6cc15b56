#!/usr/bin/env bash
# Switchboard e2e suite: checks what it needs, builds the server, then runs suite.mjs inside a
# fresh network namespace that has only a loopback interface (`unshare -n`, as root), so the
# browser, the switchboard server and coturn can reach nothing but 127.0.0.1.
#
# Needs: Debian packages chromium and coturn, node >= 18, `npm ci` in e2e/ (no browser download:
# playwright-core only drives /usr/bin/chromium).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"

step() { printf '== %s\n' "$*"; }
die() { printf 'e2e: FAILED at step: %s\n' "$*" >&2; exit 1; }

step "check tools"
[ "$(id -u)" = 0 ] || die "run as root (unshare -n needs it): sudo bash e2e/run.sh"
command -v node >/dev/null || die "node missing (apt-get install -y nodejs npm)"
command -v unshare >/dev/null && command -v ip >/dev/null || die "unshare/ip missing (apt-get install -y util-linux iproute2)"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "chromium missing: apt-get update && apt-get install -y chromium"
command -v turnserver >/dev/null || [ -x /usr/sbin/turnserver ] || [ -x /usr/bin/turnserver ] || die "coturn missing: apt-get install -y coturn"
command -v redis-server >/dev/null || die "redis-server missing (the cluster scenario): apt-get install -y redis-server"

step "npm ci (e2e/node_modules)"
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/y-webrtc" ]; then
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund) || die "npm ci in e2e/"
fi

if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  step "cargo build -p switchboard"
  (cd "$repo" && timeout 900 cargo build -q -p switchboard) || die "cargo build -p switchboard"
  export SWITCHBOARD_BIN="$repo/target/debug/switchboard"
fi
[ -x "$SWITCHBOARD_BIN" ] || die "no server binary at $SWITCHBOARD_BIN"

step "run the suites in a network namespace with only lo"
# The namespace dies with the last process in it; each suite stops everything it started by PID.
# suite.mjs: every dialect and coturn; demo.mjs: the browser SDK, the Yjs provider and /demo/.
exec timeout --kill-after=15 1200 unshare --net -- bash -c '
  set -e
  ip link set lo up
  ip -br addr
  status=0
  logs=$(mktemp -d)
  # Each suite prints its scenarios as they run; a failing suite'\''s FAIL lines and summary
  # are printed again at the very end, so that the tail of a long log names what failed.
  for suite in suite demo; do
    if [ -z "${E2E_SUITES:-}" ] || [[ ",$E2E_SUITES," == *,$suite,* ]]; then
      node "$0/$suite.mjs" 2>&1 | tee "$logs/$suite.log"
      rc=${PIPESTATUS[0]}
      if [ "$rc" -ne 0 ]; then status=$rc; fi
      echo "$rc" > "$logs/$suite.rc"
    fi
  done
  for suite in suite demo; do
    if [ -f "$logs/$suite.rc" ] && [ "$(cat "$logs/$suite.rc")" != 0 ]; then
      echo
      echo "== e2e/$suite.mjs FAILED (exit $(cat "$logs/$suite.rc")); its failures and summary again:"
      grep -E "FAIL|^(passed|failed|skipped) |^e2e: " "$logs/$suite.log" | cut -c1-2000
    fi
  done
  rm -rf "$logs"
  exit $status
' "$here"
