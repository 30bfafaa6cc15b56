#!/usr/bin/env bash
# The profile breakdown behind BENCHMARKS.md ("Where the CPU goes"): per relayed message and
# per join, for each dialect (Socket.io included), the server's
#   - system calls (all of them, and recvfrom / sendto / epoll_wait / futex by name),
#   - context switches (each one a worker thread that parked and was woken again),
#   - allocations and bytes allocated (a build with the counting allocator:
#     `--features count-alloc`, read from /metrics before and after),
#   - CPU time,
# counted with `perf stat` on the server's threads while the load tool runs the same
# scenarios as scripts/bench.sh (relay: 20 pairs x RELAY_MESSAGES, 8 in flight; churn: 16
# concurrent x CHURN_ITERATIONS connect-join-leave cycles). Loopback only; every run bounded.
#
#   scripts/profile.sh                 # all three dialects
#   DIALECTS=rendezvous scripts/profile.sh
#   PERF_RECORD=1 scripts/profile.sh   # also a sampled profile (perf record, software clock)
#                                      # of the relay, summarised by symbol in .bench/
#
# The server runs on core SERVER_CORE (0) and the load tool on TOOL_CORE (1). Results: one
# JSON line per run in .bench/profile.jsonl and a table on stdout. Needs perf (linux-perf)
# with the syscalls tracepoints readable (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/load-server.sh
OUT=.bench; mkdir -p "$OUT"; : > "$OUT/profile.jsonl"
RELAY_MESSAGES=${RELAY_MESSAGES:-15000}
CHURN_ITERATIONS=${CHURN_ITERATIONS:-5000}
SERVER_CORE=${SERVER_CORE:-0}
TOOL_CORE=${TOOL_CORE:-1}
DIALECTS=${DIALECTS:-"rendezvous octate ywebrtc socketio"}
command -v perf >/dev/null || { echo "profile: perf is missing (apt-get install -y linux-perf)" >&2; exit 2; }

# The counting allocator changes the binary: it gets its own target directory.
cargo build --release -q -p switchboard --features count-alloc --target-dir target/profile
cargo build --release -q -p switchboard-bench
SB=target/profile/release/switchboard
BENCH=target/release/switchboard-bench
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches,task-clock

PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=""; }
trap stop EXIT

start() {
  env "${LOAD_SERVER_ENV[@]}" \
      taskset -c "$SERVER_CORE" "$SB" > "$OUT/profile-server.out" 2> "$OUT/profile-server.err" &
  PID=$!
  for _ in $(seq 100); do grep -q '^listening ' "$OUT/profile-server.out" && break; sleep 0.05; done
  HTTP=$(listening_addr "$OUT/profile-server.out" http)
  SIG=$(listening_addr "$OUT/profile-server.out" signaling)
  SIO=$(listening_addr "$OUT/profile-server.out" socketio)
}

allocs() { curl -sf "http://$HTTP/metrics" | awk '/^switchboard_alloc_(calls|bytes)_total/ {printf "%s ", $2}'; }

# profile NAME DIALECT URL SCENARIO ARGS...: one scenario under perf stat.
profile() {
  local name=$1 dialect=$2 url=$3; shift 3
  local before after
  before=$(allocs)
  perf stat -x, -e "$EVENTS" -p "$PID" -o "$OUT/profile-perf.csv" &
  local perf=$!
  sleep 0.3
  local record=""
  if [ -n "${PERF_RECORD:-}" ] && [ "$1" = relay ]; then
    perf record -F 2999 -g -p "$PID" -o "$OUT/profile-$name.data" > /dev/null 2>&1 &
    record=$!
  fi
  local json
  json=$(taskset -c "$TOOL_CORE" timeout 300 "$BENCH" "$@" --dialect "$dialect" --url "$url" --server-pid "$PID" --json 2>/dev/null | tail -1)
  if [ -n "$record" ]; then kill -INT "$record"; wait "$record" || true; fi
  kill -INT "$perf"; wait "$perf" || true
  after=$(allocs)
  python3 - "$name" "$json" "$before" "$after" "$OUT/profile-perf.csv" >> "$OUT/profile.jsonl" <<'EOF'
import json, sys
name, line, before, after, csv = sys.argv[1:]
run = json.loads(line)
ops = run.get("delivered") or run.get("joins")
if not run.get("ok") or not ops:
    sys.exit(f"profile: {name} failed: {line}")
counts = {}
for row in open(csv):
    parts = row.strip().split(",")
    if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
        counts[parts[2]] = float(parts[0])
b, a = [int(x) for x in before.split()], [int(x) for x in after.split()]
per = lambda v: round(v / ops, 3)
print(json.dumps({
    "run": name, "ops": ops, "unit": "message" if "delivered" in run else "join",
    "cpu_us": per(counts["task-clock"] * 1000),  # task-clock is in ms
    "syscalls": per(counts["raw_syscalls:sys_enter"]),
    "recvfrom": per(counts["syscalls:sys_enter_recvfrom"]),
    "sendto": per(counts["syscalls:sys_enter_sendto"]),
    "epoll_wait": per(counts["syscalls:sys_enter_epoll_wait"]),
    "futex": per(counts["syscalls:sys_enter_futex"]),
    "context_switches": per(counts["context-switches"]),
    "allocations": per(a[0] - b[0]),
    "bytes_allocated": per(a[1] - b[1]),
    "bench_server_cpu_us": run.get("server_cpu_us_per_msg") or run.get("server_cpu_us_per_join"),
}))
EOF
  tail -1 "$OUT/profile.jsonl"
}

for dialect in $DIALECTS; do
  start
  case $dialect in
    rendezvous) url="ws://$HTTP/ws" ;;
    octate) url="ws://$SIG/" ;;
    ywebrtc) url="ws://$HTTP/y-webrtc" ;;
    socketio) url="ws://$SIO/socket.io/?EIO=4&transport=websocket" ;;
    *) echo "profile: unknown dialect $dialect" >&2; exit 2 ;;
  esac
  profile "${dialect}_relay" "$dialect" "$url" relay --pairs 20 --messages "$RELAY_MESSAGES" --inflight 8
  profile "${dialect}_churn" "$dialect" "$url" churn --concurrency 16 --iterations "$CHURN_ITERATIONS"
  if [ -n "${PERF_RECORD:-}" ]; then
    perf report -i "$OUT/profile-${dialect}_relay.data" --no-children --sort sym --percent-limit 0.7 --stdio 2>/dev/null \
      | grep -E '^ +[0-9.]+%' > "$OUT/profile-${dialect}_relay.txt" || true
    echo "sampled profile: $OUT/profile-${dialect}_relay.txt" >&2
  fi
  stop
done

python3 - "$OUT/profile.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cols = ["cpu_us", "syscalls", "recvfrom", "sendto", "epoll_wait", "futex", "context_switches", "allocations", "bytes_allocated"]
print(f"{'per operation':<18}" + "".join(f"{c:>17}" for c in cols))
for r in rows:
    print(f"{r['run']:<18}" + "".join(f"{r[c]:>17}" for c in cols))
EOF
