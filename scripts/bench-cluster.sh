#!/usr/bin/env bash
# Cluster mode against one node, same tool, same run (the rows in BENCHMARKS.md, "Cluster
# mode"): the load tool's relay and churn with
#   single  — one node, no Redis (the embedded default);
#   local   — two nodes on Redis, both peers of each pair on the same node (a room with no
#             member elsewhere never touches Redis for a relay);
#   cross   — two nodes on Redis, the two peers of each pair on different nodes
#             (--peer-url), server CPU summed over both nodes and redis-server.
# The servers (Redis included) run on core 0 and the load tool on core 1 (taskset).
# Loopback only; every run is bounded. Results: .bench/cluster.jsonl and a summary.
# Scale with RELAY_MESSAGES (default 10000 per pair) and CHURN_ITERATIONS (default 3000).
#   SWITCHBOARD_BIN=/path/to/older/switchboard scripts/bench-cluster.sh   # before/after
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/load-server.sh
OUT=.bench; mkdir -p "$OUT"; : > "$OUT/cluster.jsonl"
RELAY_MESSAGES=${RELAY_MESSAGES:-10000}
CHURN_ITERATIONS=${CHURN_ITERATIONS:-3000}
SERVER_CORE=${SERVER_CORE:-0}
TOOL_CORE=${TOOL_CORE:-1}
command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install -y redis-server" >&2; exit 1; }

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

# start_node NAME [REDIS_URL]: a node on core 0; sets SIG_<NAME> and PID_<NAME>.
start_node() {
  local name=$1 redis=${2:-}
  env "${LOAD_SERVER_ENV[@]}" \
      ${redis:+REDIS_URL=$redis} NODE_ID="$name" \
      taskset -c "$SERVER_CORE" "$SB" > "$OUT/$name.out" 2> "$OUT/$name.err" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 600); do grep -q '^listening ' "$OUT/$name.out" && break; sleep 0.05; done
  local http sig
  http=$(listening_addr "$OUT/$name.out" http)
  sig=$(listening_addr "$OUT/$name.out" signaling)
  [ -n "$http" ] || { echo "bench-cluster: node $name did not start: $(cat "$OUT/$name.err")" >&2; exit 1; }
  for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/readyz")" = 200 ] && break; sleep 0.05; done
  printf -v "SIG_$name" '%s' "$sig"
  printf -v "PID_$name" '%s' "$pid"
}

start_redis() {
  REDIS_PORT=$(free_port)
  taskset -c "$SERVER_CORE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no --protected-mode no --logfile "$OUT/redis.log" &
  PID_redis=$!
  PIDS+=("$PID_redis")
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
}

# run NAME PIDS ARGS...: one load-tool run, its JSON line saved with a label.
run() {
  local name=$1 pids=$2; shift 2
  echo "== $name: $BENCH $* --server-pid <$pids>" >&2
  local line
  line=$(taskset -c "$TOOL_CORE" "$BENCH" "$@" --server-pid "$pids" --json 2>/dev/null | tail -1) || true
  echo "{\"run\":\"$name\",\"result\":$line}" >> "$OUT/cluster.jsonl"
  echo "$line" | python3 -c 'import json,sys
d=json.loads(sys.stdin.read())
keys=["ok","host_steal_ms","msgs_per_sec","latency_p50_us","latency_p99_us","latency_p999_us","server_cpu_us_per_msg","lost","reordered","duplicated","joins_per_sec","join_latency_p50_us","join_latency_p99_us","server_cpu_us_per_join"]
print("   ", {k: d[k] for k in keys if k in d})' >&2
}

suite() { # LABEL URL PEER_URL PIDS
  local label=$1 url=$2 peer=$3 pids=$4
  run "${label}_relay_light" "$pids" relay --pairs 10 --messages 2000 --inflight 1 --url "$url" --peer-url "$peer"
  run "${label}_relay_max" "$pids" relay --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8 --url "$url" --peer-url "$peer"
  run "${label}_churn" "$pids" churn --concurrency 16 --iterations "$CHURN_ITERATIONS" --url "$url" --peer-url "$peer"
}

# One node, no Redis.
start_node single
suite single "ws://$SIG_single/" "ws://$SIG_single/" "$PID_single"
stop_all

# Two nodes on Redis.
start_redis
start_node n1 "redis://127.0.0.1:$REDIS_PORT"
start_node n2 "redis://127.0.0.1:$REDIS_PORT"
suite local "ws://$SIG_n1/" "ws://$SIG_n1/" "$PID_n1,$PID_n2,$PID_redis"
suite cross "ws://$SIG_n1/" "ws://$SIG_n2/" "$PID_n1,$PID_n2,$PID_redis"
stop_all

python3 - "$OUT/cluster.jsonl" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line); rows[d["run"]] = d["result"] or {}
def g(run, key):
    v = rows.get(run, {}).get(key)
    return "—" if v is None else v
print("| | one node (no Redis) | cluster, both peers on one node | cluster, peers on two nodes |")
print("|---|---|---|---|")
for label, run, keys in [
    ("relay light (10 pairs × 2,000, 1 in flight): p50 / p99 µs", "relay_light", ["latency_p50_us", "latency_p99_us"]),
    ("relay light: server CPU per msg (µs, summed)", "relay_light", ["server_cpu_us_per_msg"]),
    ("relay max (20 pairs, 8 in flight): msg/s", "relay_max", ["msgs_per_sec"]),
    ("relay max: p50 / p99 µs", "relay_max", ["latency_p50_us", "latency_p99_us"]),
    ("relay max: server CPU per msg (µs, summed)", "relay_max", ["server_cpu_us_per_msg"]),
    ("relay: lost / reordered / duplicated (both runs)", None, None),
    ("churn (16 workers): joins/s", "churn", ["joins_per_sec"]),
    ("churn: join p50 / p99 µs", "churn", ["join_latency_p50_us", "join_latency_p99_us"]),
    ("churn: server CPU per join (µs, summed)", "churn", ["server_cpu_us_per_join"]),
]:
    cells = []
    for pre in ["single", "local", "cross"]:
        if run is None:
            t = [sum(rows.get(f"{pre}_{r}", {}).get(k, 0) or 0 for r in ["relay_light", "relay_max"]) for k in ["lost", "reordered", "duplicated"]]
            cells.append(" / ".join(map(str, t)))
        else:
            cells.append(" / ".join(str(g(f"{pre}_{run}", k)) for k in keys))
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
