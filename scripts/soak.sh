#!/usr/bin/env bash
# The soak of issue 15 (point 4): idle peers, relay pairs at half the measured maximum,
# churning clients and a slowloris crowd against one server at once, through
# `switchboard-bench soak`. It fails on any error, on RSS growing more than 5 % after the
# warm-up, and on server descriptors that do not come back. Loopback only; every run is bounded.
#
#   scripts/soak.sh           # the full run behind BENCHMARKS.md ("Soak"): release build, 600 s
#   scripts/soak.sh --short   # the 30-second version that the test command runs (debug build)
#
# Full run:
#   1. builds the release binaries;
#   2. measures the relay maximum on a fresh server (20 pairs x RELAY_MESSAGES, 8 in flight,
#      as scripts/bench.sh does) and stops it;
#   3. starts another fresh server and soaks it for SOAK_SECONDS (600) with SOAK_IDLE (15000)
#      idle peers, SOAK_PAIRS (200) pairs sending half that maximum in total (max / 2 / pairs
#      each), SOAK_CHURNERS (20) churners and SOAK_SLOWLORIS (500) slowloris sockets.
#   The server runs on core SERVER_CORE (0) and the load tool on TOOL_CORE (1) (taskset).
#   The soak's JSON line goes to .bench/soak.jsonl (appended, with the date and the maximum),
#   its per-second RSS and descriptor readings to .bench/soak-samples.csv.
#
# --short: the debug binaries the test command's build step made (SWITCHBOARD_BIN,
#   BENCH_BIN), no maximum measured and no pinning; 30 s with 2,000 idle peers, 20 pairs at
#   50 msg/s each, 5 churners and 100 slowloris sockets (see README of switchboard-bench for
#   why these sizes and the warm-up). Output in a temporary directory, removed at the end.
#
# Either way the script starts the server itself with the limits that would trip a load test
# raised (per-IP connections, message and request rates, room creations, memory thresholds),
# stops only that process, by its PID, and exits with the soak's status.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/load-server.sh

SHORT=""
case "${1:-}" in
  --short) SHORT=1 ;;
  "") ;;
  *) echo "usage: scripts/soak.sh [--short]" >&2; exit 2 ;;
esac

TARGET=${CARGO_TARGET_DIR:-target}
if [ -n "$SHORT" ]; then
  SB=${SWITCHBOARD_BIN:-$TARGET/debug/switchboard}
  BENCH=${BENCH_BIN:-$TARGET/debug/switchboard-bench}
  for bin in "$SB" "$BENCH"; do
    [ -x "$bin" ] || { echo "soak: no executable at $bin (cargo build --workspace --bins)" >&2; exit 2; }
  done
  OUT=$(mktemp -d)
  PIN_SERVER=(); PIN_TOOL=()
else
  cargo build --release -q -p switchboard -p switchboard-bench
  SB=$TARGET/release/switchboard
  BENCH=$TARGET/release/switchboard-bench
  OUT=.bench; mkdir -p "$OUT"
  PIN_SERVER=(taskset -c "${SERVER_CORE:-0}"); PIN_TOOL=(taskset -c "${TOOL_CORE:-1}")
fi
# Every peer is a descriptor on both sides.
ulimit -n "$(ulimit -Hn)"

PID=""
stop_server() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
cleanup() {
  stop_server
  if [ -n "$SHORT" ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Starts a fresh server on free loopback ports; sets PID, HTTP and SIG.
start_server() {
  env "${LOAD_SERVER_ENV[@]}" \
      "${PIN_SERVER[@]}" "$SB" > "$OUT/server.out" 2> "$OUT/server.err" &
  PID=$!
  local line=""
  for _ in $(seq 100); do
    line=$(grep -m1 '^listening ' "$OUT/server.out" || true)
    [ -n "$line" ] && break
    if ! kill -0 "$PID" 2>/dev/null; then
      echo "soak: the server exited at start:" >&2; cat "$OUT/server.err" >&2; exit 1
    fi
    sleep 0.1
  done
  if [ -z "$line" ]; then
    echo "soak: the server did not report its addresses within 10 s" >&2; cat "$OUT/server.err" >&2; exit 1
  fi
  HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$line")
  SIG=$(sed -n 's/.*signaling=\([^ ]*\).*/\1/p' <<<"$line")
}

if [ -n "$SHORT" ]; then
  DURATION=30
  # Warm-up: half the run (15 s). The slowloris starts are spread over the first 10 s and
  # the first sockets reconnect at 10-20 s, so the load has its full shape only after ~12 s.
  ARGS=(--idle 2000 --pairs 20 --rate 50 --churners 5 --slowloris 100 --warmup-fraction 0.5)
  MAX=""
else
  DURATION=${SOAK_SECONDS:-600}
  PAIRS=${SOAK_PAIRS:-200}
  start_server
  echo "== relay maximum: 20 pairs x ${RELAY_MESSAGES:-15000}, 8 in flight (server pid $PID)" >&2
  "${PIN_TOOL[@]}" "$BENCH" relay --pairs 20 --messages "${RELAY_MESSAGES:-15000}" --inflight 8 \
    --url "ws://$SIG/" --server-pid "$PID" --json > "$OUT/soak-relay-max.out"
  MAX=$(tail -1 "$OUT/soak-relay-max.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["msgs_per_sec"])')
  stop_server
  RATE=$(python3 -c "import sys; print(round(float(sys.argv[1]) / 2 / int(sys.argv[2]), 2))" "$MAX" "$PAIRS")
  echo "== relay maximum $MAX msg/s: the soak offers half, $RATE msg/s on each of $PAIRS pairs" >&2
  ARGS=(--idle "${SOAK_IDLE:-15000}" --pairs "$PAIRS" --rate "$RATE"
        --churners "${SOAK_CHURNERS:-20}" --slowloris "${SOAK_SLOWLORIS:-500}")
fi

start_server
echo "== soak: ${DURATION} s against server pid $PID (http=$HTTP signaling=$SIG)" >&2
set -x
status=0
"${PIN_TOOL[@]}" "$BENCH" soak --duration "$DURATION" "${ARGS[@]}" \
  --url "ws://$SIG/" --http "$HTTP" --server-pid "$PID" \
  --duration-limit "$((DURATION + 120))" --samples-out "$OUT/soak-samples.csv" --json \
  > "$OUT/soak.out" || status=$?
{ set +x; } 2>/dev/null
cat "$OUT/soak.out"
line=$(tail -1 "$OUT/soak.out")
if [ -z "$SHORT" ] && [ "${line:0:1}" = "{" ]; then
  printf '{"run":"soak","date":"%s","relay_max_msgs_per_sec":%s,"result":%s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${MAX:-null}" "$line" >> "$OUT/soak.jsonl"
  echo "soak: JSON line appended to $OUT/soak.jsonl, readings in $OUT/soak-samples.csv" >&2
fi
exit "$status"
