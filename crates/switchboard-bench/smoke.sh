#!/usr/bin/env bash
# Smoke test of the load tool against a real Switchboard: starts the server on free loopback
# ports, runs every scenario in --quick mode for each dialect, then stops the server.
# Exits non-zero on the first failing run.
#
# Usage: crates/switchboard-bench/smoke.sh [SWITCHBOARD_BIN [BENCH_BIN]]
#   defaults: target/debug/switchboard and target/debug/switchboard-bench (build them first)
#   BENCH_DIALECTS: space-separated dialect=url pairs; {http} and {signaling} are replaced by
#                   the server's bound addresses. Default: octate on the signaling port,
#                   rendezvous at /ws and y-webrtc at /y-webrtc on the HTTP port.
set -euo pipefail
cd "$(dirname "$0")/../.."

server_bin=${1:-${SWITCHBOARD_BIN:-target/debug/switchboard}}
bench_bin=${2:-${BENCH_BIN:-target/debug/switchboard-bench}}
dialects=${BENCH_DIALECTS:-"octate=ws://{signaling}/ rendezvous=ws://{http}/ws ywebrtc=ws://{http}/y-webrtc"}
for bin in "$server_bin" "$bench_bin"; do
  [ -x "$bin" ] || { echo "smoke: no executable at $bin (cargo build --workspace --bins)" >&2; exit 2; }
done

logs=$(mktemp -d)
# Every listener on a free port (the ones a given server version lacks are ignored).
HOST=127.0.0.1 PORT=0 SIGNALING_PORT=0 SOCKETIO_PORT=0 "$server_bin" >"$logs/stdout" 2>"$logs/stderr" &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT

# The server prints "listening http=ADDR signaling=ADDR" once bound (at most 10 s).
line=""
for _ in $(seq 100); do
  line=$(grep -m1 '^listening ' "$logs/stdout" || true)
  [ -n "$line" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "smoke: the server exited at start:" >&2
    cat "$logs/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$line" ]; then
  echo "smoke: the server did not report its addresses within 10 s" >&2
  cat "$logs/stderr" >&2
  exit 1
fi
http=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$line")
signaling=$(sed -n 's/.*signaling=\([^ ]*\).*/\1/p' <<<"$line")
echo "smoke: server pid $server_pid, http=$http signaling=$signaling"

for entry in $dialects; do
  dialect=${entry%%=*}
  url=${entry#*=}
  url=${url//\{http\}/$http}
  url=${url//\{signaling\}/$signaling}
  for scenario in idle relay churn; do
    echo "---- $scenario, $dialect, $url"
    "$bench_bin" "$scenario" --quick --dialect "$dialect" --url "$url" \
      --server-pid "$server_pid" --duration-limit 60 --json
  done
done
# The paced relay (--rate) behind the half-load latency figure.
echo "---- relay --rate 2000, octate"
"$bench_bin" relay --quick --rate 2000 --url "ws://$signaling/" \
  --server-pid "$server_pid" --duration-limit 60 --json
echo "smoke: all runs passed"
