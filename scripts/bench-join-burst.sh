#!/usr/bin/env bash
# Cross-node signal latency while the receiving node is busy with joins (issue 19: a join
# used to hold a node-wide gate across its Redis round trips, so every inbound cross-node
# message on that node waited behind every join). Two nodes on Redis; 10 pairs relay from
# node 1 to node 2 with one message in flight, first alone, then while 16 churn workers
# connect-join-leave on node 2. Prints the relay's p50/p99/p999 in both phases.
# Loopback only; every run is bounded. Servers on core 0, load on core 1.
#   SWITCHBOARD_BIN=/path/to/older/switchboard scripts/bench-join-burst.sh   # before/after
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/load-server.sh
OUT=.bench; mkdir -p "$OUT"
MESSAGES=${MESSAGES:-3000}
cargo build --release -q -p switchboard -p switchboard-bench
SB=${SWITCHBOARD_BIN:-target/release/switchboard}
BENCH=target/release/switchboard-bench
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
REDIS_PORT=$(free_port)
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --protected-mode no --logfile "$OUT/burst-redis.log" &
PIDS+=("$!")
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
start_node() { # NAME -> SIG_<NAME>
  env "${LOAD_SERVER_ENV[@]}" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" NODE_ID="$1" \
    taskset -c 0 "$SB" > "$OUT/burst-$1.out" 2> "$OUT/burst-$1.err" &
  PIDS+=("$!")
  for _ in $(seq 600); do grep -q '^listening ' "$OUT/burst-$1.out" && break; sleep 0.05; done
  local http
  http=$(listening_addr "$OUT/burst-$1.out" http)
  for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/readyz")" = 200 ] && break; sleep 0.05; done
  printf -v "SIG_$1" '%s' "$(listening_addr "$OUT/burst-$1.out" signaling)"
}
start_node n1
start_node n2
relay() {
  taskset -c 1 "$BENCH" relay --pairs 10 --messages "$MESSAGES" --inflight 1 \
    --url "ws://$SIG_n1/" --peer-url "ws://$SIG_n2/" --json 2>/dev/null | tail -1
}
show() {
  python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
print(sys.argv[1], {k: d.get(k) for k in ["latency_p50_us","latency_p99_us","latency_p999_us","lost","reordered","duplicated"]})' "$1"
}
relay | show "alone:          "
taskset -c 1 "$BENCH" churn --concurrency 16 --iterations 50000 --fresh-rooms \
  --url "ws://$SIG_n2/" --peer-url "ws://$SIG_n2/" --json > "$OUT/burst-churn.json" 2>/dev/null &
CHURN=$!
sleep 1
relay | show "during joins:   "
kill "$CHURN" 2>/dev/null || true
wait "$CHURN" 2>/dev/null || true
