#!/usr/bin/env bash
# The full benchmark behind BENCHMARKS.md: Switchboard and, when given, the peer servers,
# measured with the same load tool in the same run. Loopback only; every run is bounded.
#
#   scripts/bench.sh                       # Switchboard only
#   Y_WEBRTC_SERVER=/path/to/node_modules/y-webrtc/bin/server.js \
#   MATCHBOX_SERVER=/path/to/matchbox_server scripts/bench.sh
#   PEERS_ONLY=1 ... scripts/bench.sh   # only the peer servers
#   SWITCHBOARD_BIN=/path/to/older/switchboard scripts/bench.sh   # a before/after comparison
#
# The server runs on core 0 and the load tool on core 1 (taskset), so server CPU per
# operation is read from /proc/<pid>/stat undisturbed. Results: one JSON line per run in
# .bench/results.jsonl, and a summary on stdout. Scale with IDLE_PEERS (default 15000),
# RELAY_MESSAGES (default 15000 per pair) and CHURN_ITERATIONS (default 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/load-server.sh
OUT=.bench; mkdir -p "$OUT"; : > "$OUT/results.jsonl"
IDLE_PEERS=${IDLE_PEERS:-15000}
RELAY_MESSAGES=${RELAY_MESSAGES:-15000}
CHURN_ITERATIONS=${CHURN_ITERATIONS:-5000}
SERVER_CORE=${SERVER_CORE:-0}
TOOL_CORE=${TOOL_CORE:-1}

cargo build --release -q -p switchboard -p switchboard-bench
SB=${SWITCHBOARD_BIN:-target/release/switchboard}
BENCH=target/release/switchboard-bench
PID=""

stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=""; }
trap stop EXIT

start_switchboard() {
  env "${LOAD_SERVER_ENV[@]}" "$@" \
      taskset -c "$SERVER_CORE" "$SB" > "$OUT/server.out" 2> "$OUT/server.err" &
  PID=$!
  for _ in $(seq 100); do grep -q '^listening ' "$OUT/server.out" && break; sleep 0.05; done
  HTTP=$(listening_addr "$OUT/server.out" http)
  SIG=$(listening_addr "$OUT/server.out" signaling)
  SIO=$(listening_addr "$OUT/server.out" socketio)
}

start_node_ywebrtc() {
  PORT=18444 taskset -c "$SERVER_CORE" node "$Y_WEBRTC_SERVER" > "$OUT/peer.out" 2>&1 &
  PID=$!; sleep 1
}

start_matchbox() {
  HOST=127.0.0.1:18536 taskset -c "$SERVER_CORE" "$MATCHBOX_SERVER" > "$OUT/peer.out" 2>&1 &
  PID=$!; sleep 1
}

# run NAME SCENARIO ARGS... : one load-tool run against $PID, JSON line saved with a label.
run() {
  local name=$1; shift
  echo "== $name: $BENCH $* --server-pid \$PID" >&2
  local line
  line=$(taskset -c "$TOOL_CORE" "$BENCH" "$@" --server-pid "$PID" --json 2>/dev/null | tail -1) || true
  echo "{\"run\":\"$name\",\"result\":$line}" >> "$OUT/results.jsonl"
  echo "$line" | python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
keys=["ok","host_steal_ms","server_rss_idle_kib","server_rss_per_peer_kib","joined","msgs_per_sec","latency_p50_us","latency_p99_us","latency_p999_us","server_cpu_us_per_msg","lost","reordered","duplicated","joins_per_sec","join_latency_p50_us","join_latency_p99_us","server_cpu_us_per_join"]
print("   ", {k: d[k] for k in keys if k in d})' >&2
}

if [ -z "${PEERS_ONLY:-}" ]; then
echo "== cold start to listening (20 runs)" >&2
python3 - "$SB" <<'PY' | tee -a "$OUT/results.jsonl" >&2
import os, subprocess, sys, time, json
times = []
for _ in range(20):
    env = dict(os.environ, HOST="127.0.0.1", PORT="0", SIGNALING_PORT="0", SOCKETIO_PORT="0", LOG_LEVEL="warn")
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    p.stdout.readline()
    times.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait(timeout=10)
times.sort()
print(json.dumps({"run": "cold_start_ms", "result": {"median": round(times[10], 1), "max": round(times[-1], 1)}}))
PY
fi

if [ -z "${PEERS_ONLY:-}" ]; then
# Switchboard, OctateCode dialect (a fresh server per memory measurement).
start_switchboard
run sb_octate_idle idle --peers "$IDLE_PEERS" --room-size 2 --url "ws://$SIG/" --settle 3
stop
start_switchboard
run sb_octate_relay_light relay --pairs 10 --messages 2000 --inflight 1 --url "ws://$SIG/"
run sb_octate_relay_max relay --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url "ws://$SIG/"
# Half load: the same pairs offered half of the maximum just measured, on a fixed schedule.
HALF=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    d=json.loads(l)
    if d["run"]=="sb_octate_relay_max": print(int(d["result"].get("msgs_per_sec",0)/2))' "$OUT/results.jsonl" || echo 0)
run sb_octate_relay_half relay --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --rate "$HALF" --url "ws://$SIG/"
run sb_octate_churn churn --concurrency 16 --iterations "$CHURN_ITERATIONS" --url "ws://$SIG/"
stop
# Switchboard, rendezvous dialect (seed 004).
start_switchboard
run sb_rendezvous_idle idle --dialect rendezvous --peers "$IDLE_PEERS" --room-size 2 --url "ws://$HTTP/ws" --settle 3
stop
start_switchboard
run sb_rendezvous_relay_max relay --dialect rendezvous --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url "ws://$HTTP/ws"
run sb_rendezvous_churn churn --dialect rendezvous --concurrency 16 --iterations "$CHURN_ITERATIONS" --url "ws://$HTTP/ws"
stop
# Switchboard, y-webrtc dialect, to compare with the y-webrtc server on the same protocol.
start_switchboard
run sb_ywebrtc_idle idle --dialect ywebrtc --peers "$IDLE_PEERS" --room-size 2 --url "ws://$HTTP/y-webrtc" --settle 3
stop
start_switchboard
run sb_ywebrtc_relay_max relay --dialect ywebrtc --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url "ws://$HTTP/y-webrtc"
run sb_ywebrtc_churn churn --dialect ywebrtc --concurrency 16 --iterations "$CHURN_ITERATIONS" --url "ws://$HTTP/y-webrtc"
stop
# Switchboard, Socket.io dialect (seed 003, Engine.IO over WebSocket on SOCKETIO_PORT; the
# tool makes each room with POST /api/rooms there first).
start_switchboard
run sb_socketio_relay_max relay --dialect socketio --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url "ws://$SIO/socket.io/?EIO=4&transport=websocket"
run sb_socketio_churn churn --dialect socketio --concurrency 16 --iterations "$CHURN_ITERATIONS" --url "ws://$SIO/socket.io/?EIO=4&transport=websocket"
stop
fi

if [ -n "${Y_WEBRTC_SERVER:-}" ]; then
  start_node_ywebrtc
  run ywebrtc_node_idle idle --dialect ywebrtc --peers "$IDLE_PEERS" --room-size 2 --url ws://127.0.0.1:18444/ --settle 3
  stop
  start_node_ywebrtc
  run ywebrtc_node_relay_max relay --dialect ywebrtc --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url ws://127.0.0.1:18444/
  run ywebrtc_node_churn churn --dialect ywebrtc --concurrency 16 --iterations "$CHURN_ITERATIONS" --url ws://127.0.0.1:18444/
  stop
fi
if [ -n "${MATCHBOX_SERVER:-}" ]; then
  start_matchbox
  run matchbox_idle idle --dialect matchbox --peers "$IDLE_PEERS" --room-size 2 --url ws://127.0.0.1:18536/ --settle 3
  stop
  start_matchbox
  run matchbox_relay_max relay --dialect matchbox --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url ws://127.0.0.1:18536/
  run matchbox_churn churn --dialect matchbox --concurrency 16 --iterations "$CHURN_ITERATIONS" --url ws://127.0.0.1:18536/
  stop
fi
echo "results: $OUT/results.jsonl" >&2
