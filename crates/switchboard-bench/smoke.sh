#!/usr/bin/env bash
# Smoke test of the load tool against a real Switchboard: starts the server on free loopback
# ports, runs every scenario in --quick mode for each dialect, then stops the server.
# Exits non-zero on the first failing run.
#
# Usage: crates/switchboard-bench/smoke.sh [SWITCHBOARD_BIN [BENCH_BIN]]
#   defaults: target/debug/switchboard and target/debug/switchboard-bench (build them first)
#   BENCH_DIALECTS: space-separated dialect=url pairs; {http}, {signaling} and {socketio} are
#                   replaced by the server's bound addresses. Default: octate on the signaling
#                   port, rendezvous at /ws and y-webrtc at /y-webrtc on the HTTP port, and
#                   Socket.io on the Socket.io port.
set -euo pipefail
cd "$(dirname "$0")/../.."

server_bin=${1:-${SWITCHBOARD_BIN:-target/debug/switchboard}}
bench_bin=${2:-${BENCH_BIN:-target/debug/switchboard-bench}}
dialects=${BENCH_DIALECTS:-"octate=ws://{signaling}/ rendezvous=ws://{http}/ws ywebrtc=ws://{http}/y-webrtc socketio=ws://{socketio}/"}
for bin in "$server_bin" "$bench_bin"; do
  [ -x "$bin" ] || { echo "smoke: no executable at $bin (cargo build --workspace --bins)" >&2; exit 2; }
done

logs=$(mktemp -d)
# Every listener on a free port (the ones a given server version lacks are ignored).
# The per-client limits are off, as in scripts/bench.sh: the guard's runs below send more than
# a default client may (the limits have their own tests).
HOST=127.0.0.1 PORT=0 SIGNALING_PORT=0 SOCKETIO_PORT=0 MAX_MESSAGES_PER_SECOND=0 \
  HTTP_REQUESTS_PER_SECOND=0 ROOM_CREATIONS_PER_MINUTE=0 MAX_CONNECTIONS_PER_IP=0 "$server_bin" >"$logs/stdout" 2>"$logs/stderr" &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT

# The server prints "listening http=ADDR signaling=ADDR socketio=ADDR" once bound (at most 10 s).
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
socketio=$(sed -n 's/.*socketio=\([^ ]*\).*/\1/p' <<<"$line")
echo "smoke: server pid $server_pid, http=$http signaling=$signaling socketio=$socketio"

for entry in $dialects; do
  dialect=${entry%%=*}
  url=${entry#*=}
  url=${url//\{http\}/$http}
  url=${url//\{signaling\}/$signaling}
  url=${url//\{socketio\}/$socketio}
  for scenario in idle relay churn; do
    # Enough work that the server's CPU time (read in 10 ms ticks) is measured to a few
    # percent: 4 pairs x 2,000 messages, 1,000 joins.
    more=()
    case $scenario in relay) more=(--messages 2000) ;; churn) more=(--iterations 1000) ;; esac
    echo "---- $scenario, $dialect, $url"
    "$bench_bin" "$scenario" --quick "${more[@]}" --dialect "$dialect" --url "$url" \
      --server-pid "$server_pid" --duration-limit 60 --json | tee "$logs/run.out"
    # The JSON line is the last; the regression guard below reads its CPU figures.
    printf '{"dialect":"%s","scenario":"%s","run":%s}\n' "$dialect" "$scenario" "$(tail -1 "$logs/run.out")" \
      >> "$logs/runs.jsonl"
  done
done

# The paced relay (--rate) behind the half-load latency figure.
echo "---- relay --rate 2000, octate"
"$bench_bin" relay --quick --rate 2000 --url "ws://$signaling/" \
  --server-pid "$server_pid" --duration-limit 60 --json

# Regression guard (a coarse one, against accidental quadratic work; not a timing test):
# the server's CPU per relayed message and per join, next to the committed reference for
# this quick mode and build; a figure worse than GUARD_FACTOR (2) times its reference fails.
# The reference is per build profile (debug, as the test command builds, or release).
reference=${BENCH_REFERENCE:-crates/switchboard-bench/smoke-reference.json}
if [ -f "$reference" ] && [ -z "${BENCH_NO_GUARD:-}" ]; then
  profile=debug
  [[ "$server_bin" == */release/* ]] && profile=release
  python3 - "$reference" "$profile" "$logs/runs.jsonl" "${GUARD_FACTOR:-2}" <<'EOF'
import json, sys
reference, profile, runs, factor = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
refs = json.load(open(reference))
if profile not in refs:
    print(f"regression guard: NOT APPLIED: {reference} has no reference for a {profile} build")
    sys.exit(0)
ref = refs[profile]
worse = []
print(f"regression guard ({profile} build; fails above {factor:g}x the reference in {reference}):")
for line in open(runs):
    r = json.loads(line)
    key = {"relay": "server_cpu_us_per_msg", "churn": "server_cpu_us_per_join"}.get(r["scenario"])
    if key is None:
        continue
    name = f"{r['dialect']} {r['scenario']}"
    got, want = r["run"].get(key), ref.get(name)
    if got is None or want is None:
        sys.exit(f"regression guard: no {key} for {name} (run {got}, reference {want})")
    verdict = "ok" if got <= factor * want else "WORSE"
    unit = "us/msg" if r["scenario"] == "relay" else "us/join"
    print(f"  {name:<18} {got:>8.2f} {unit:<8} reference {want:>8.2f}  {verdict}")
    if verdict != "ok":
        worse.append(name)
if worse:
    sys.exit(f"regression guard: CPU more than {factor:g}x the reference for {', '.join(worse)}")
EOF
fi
echo "smoke: all runs passed"
