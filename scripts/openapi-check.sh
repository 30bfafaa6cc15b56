#!/usr/bin/env bash
# Checks the server against its own OpenAPI documents with schemathesis (PyPI): the real
# binary on loopback port 0, once in development and once in production mode, and in each
# both documents (GET /api/openapi.json on PORT and on SOCKETIO_PORT). Fails on any 5xx, any
# status, content type, header or body that its document does not describe, and (production)
# any admin route that answers without the admin key. Bounded: at most ST_EXAMPLES examples
# per operation and phase (default 25), with a fixed seed (ST_SEED) so a run is repeatable.
#
#   scripts/openapi-check.sh [path/to/switchboard]
#
# Needs `schemathesis` (scripts/test-all.sh installs it from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-${SWITCHBOARD_BIN:-target/debug/switchboard}}
examples=${ST_EXAMPLES:-25}
seed=${ST_SEED:-23}
admin_key="openapi-check-admin-key"
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the server with the given environment; sets http and socketio (host:port) from the
# line it prints once listening.
start() {
  : >"$work/out"
  env HOST=127.0.0.1 PORT=0 SIGNALING_PORT=0 SOCKETIO_PORT=0 LOG_LEVEL=error \
    HTTP_REQUESTS_PER_SECOND=0 ROOM_CREATIONS_PER_MINUTE=0 AUTH_FAILURES_PER_MINUTE=0 \
    "$@" "$bin" >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 200); do
    if grep -q '^listening ' "$work/out"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/err" >&2; echo "openapi-check: the server exited" >&2; exit 1; fi
    sleep 0.05
  done
  line=$(grep '^listening ' "$work/out") || { echo "openapi-check: the server did not start" >&2; exit 1; }
  http=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$line")
  socketio=$(sed -n 's/.*socketio=\([^ ]*\).*/\1/p' <<<"$line")
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

# schemathesis against one document; prints its summary and returns its status.
check() {
  local name=$1 base=$2 extra_checks=$3
  shift 3
  echo "--- $name: http://$base/api/openapi.json"
  local rc=0
  # From the scratch directory: schemathesis keeps its example database in ./.schemathesis.
  (cd "$work" && st run "http://$base/api/openapi.json" --url "http://$base" \
    --checks "$checks$extra_checks" --max-examples "$examples" --seed "$seed" \
    --request-timeout 10 --no-color "$@") >"$work/st.log" 2>&1 || rc=$?
  # The failures in full, then the counts.
  if [ "$rc" -ne 0 ]; then sed -n '/FAILURES/,/SUMMARY/p' "$work/st.log"; fi
  sed -n '/SUMMARY/,$p' "$work/st.log" | grep -E 'Tested:|generated|passed|failures|error' || tail -20 "$work/st.log"
  return "$rc"
}

status=0

start NODE_ENV=development
check "development, PORT" "$http" "" || status=1
check "development, SOCKETIO_PORT" "$socketio" "" || status=1
stop

start NODE_ENV=production AUTH_SECRET=openapi-check-secret-0123456789 ADMIN_API_KEY="$admin_key"
# With the admin key every route is reached; ignored_auth repeats each request without it and
# fails if a route that declares the key answers anyway.
check "production, PORT" "$http" ",ignored_auth" -H "Authorization: Bearer $admin_key" || status=1
check "production, SOCKETIO_PORT" "$socketio" ",ignored_auth" -H "Authorization: Bearer $admin_key" || status=1
stop

if [ "$status" -ne 0 ]; then
  echo "openapi-check: FAILED (schemathesis found responses the documents do not describe)" >&2
fi
exit "$status"
