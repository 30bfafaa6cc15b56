#!/usr/bin/env bash
# The docker-compose.yml topology on one machine, without Docker: Debian's redis-server,
# three switchboard nodes sharing it (REDIS_URL), and nginx in front as a round-robin
# WebSocket load balancer (no sticky sessions). Everything listens on 127.0.0.1 only.
#
#   scripts/cluster.sh            start it and wait (Ctrl-C stops everything)
#   scripts/cluster.sh --smoke    start it, check it works through nginx, stop (the test
#                                 command runs this once)
#
# Environment: SWITCHBOARD_BIN (default: target/release/switchboard, built if missing),
# LB_PORT (default 8080; --smoke picks free ports), LOG_LEVEL (default warn).
# Needs: redis-server and nginx (apt-get install -y redis-server nginx), curl, python3.
# Every process it starts is stopped by its PID when it exits; its files live in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
die() { echo "cluster.sh: $*" >&2; exit 1; }

REDIS_SERVER=$(command -v redis-server || true)
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$REDIS_SERVER" ] || die "redis-server missing: apt-get install -y redis-server"
[ -n "$NGINX" ] || die "nginx missing: apt-get install -y nginx"
command -v curl >/dev/null || die "curl missing"

BIN=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
if [ ! -x "$BIN" ]; then
  echo "building $BIN"
  cargo build --release -q -p switchboard
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-cluster.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    local pid=${PIDS[$i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ $status -ne 0 ]; then
    echo "--- last output ---" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $(basename "$f")"; tail -n 20 "$f"; } >&2; done
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $SMOKE = 1 ]; then
  REDIS_PORT=$(free_port); LB_PORT=$(free_port)
else
  REDIS_PORT=${REDIS_PORT:-6379}; LB_PORT=${LB_PORT:-8080}
fi

# 1. Redis (no persistence: the cluster rebuilds membership from its nodes; a larger pub/sub
#    output limit, past which Redis drops a subscriber and what it held: docs/PROTOCOL.md).
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --client-output-buffer-limit "pubsub 256mb 64mb 60" \
  --protected-mode no --logfile "$WORK/redis.log" &
PIDS+=($!)

# 2. Three nodes. nginx is their only client: TRUSTED_PROXIES lets the per-client limits see
#    each client's address (X-Forwarded-For) instead of nginx's.
UPSTREAMS=""
NODE_HTTP=()
for i in 1 2 3; do
  if [ $SMOKE = 1 ]; then P=$(free_port); S=$(free_port); IO=$(free_port); else P=$((3000 + i * 10)); S=$((P + 1)); IO=$((P + 2)); fi
  HOST=127.0.0.1 PORT=$P SIGNALING_PORT=$S SOCKETIO_PORT=$IO \
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" NODE_ID="node$i" TRUSTED_PROXIES=127.0.0.1 \
  LOG_LEVEL="${LOG_LEVEL:-warn}" "$BIN" >"$WORK/node$i.log" 2>&1 &
  PIDS+=($!)
  UPSTREAMS+="    server 127.0.0.1:$P;"$'\n'
  NODE_HTTP+=("127.0.0.1:$P")
done

# 3. nginx: round robin over the nodes' PORT (every WebSocket endpoint is served there),
#    WebSocket upgrades forwarded, no stickiness.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream switchboard {
$UPSTREAMS  }
  server {
    listen 127.0.0.1:$LB_PORT;
    location / {
      proxy_pass http://switchboard;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
  }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

# Ready: every node says so, and the balancer answers.
for n in "${NODE_HTTP[@]}" "127.0.0.1:$LB_PORT"; do
  ok=0
  for _ in $(seq 1 200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$n/readyz" 2>/dev/null)" = 200 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || die "$n not ready within 20 s"
done
LB="127.0.0.1:$LB_PORT"
echo "cluster up: Redis 127.0.0.1:$REDIS_PORT, nodes ${NODE_HTTP[*]}, load balancer http://$LB"
echo "  OctateCode ws://$LB/signaling  Socket.io http://$LB/socket.io/  rendezvous ws://$LB/ws?room=CODE  y-webrtc ws://$LB/y-webrtc"

if [ $SMOKE = 0 ]; then
  echo "Ctrl-C stops it."
  wait "${PIDS[0]}"
  exit 0
fi

# --- smoke test ------------------------------------------------------------------------------
fail() { echo "cluster smoke test FAILED: $*" >&2; exit 1; }
# Round robin: three requests reach three nodes.
nodes=$(for _ in 1 2 3; do curl -s "http://$LB/api/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; done | sort -u | wc -l)
[ "$nodes" = 3 ] || fail "three requests through nginx reached $nodes node(s), not 3"
# A room created through one node is seen through the others.
room=$(curl -s -X POST "http://$LB/api/rooms" -H 'Content-Type: application/json' -d '{"roomId":"smoke"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["roomId"])')
[ "$room" = smoke ] || fail "POST /api/rooms through nginx"
for n in "${NODE_HTTP[@]}"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$n/api/rooms/smoke")" = 200 ] || fail "room not visible on $n"
done
# Two WebSocket peers through nginx land on different nodes and exchange a signal.
WS="$ROOT/target/debug/examples/ws"
[ -x "$WS" ] || cargo build -q -p switchboard --example ws
mkfifo "$WORK/a.in"
LINGER=0 "$WS" "ws://$LB/signaling" <"$WORK/a.in" >"$WORK/a.out" 2>&1 &
PIDS+=($!)
exec 3>"$WORK/a.in"
echo '{"type":"auth","userId":"alice","roomId":"smoke"}' >&3
echo '{"type":"join-room","roomId":"smoke"}' >&3
wait_for() { # file pattern what
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "$3 (no $2 in $(basename "$1"): $(cat "$1" 2>/dev/null))"
}
wait_for "$WORK/a.out" '"room-joined"' "alice joins through nginx"
mkfifo "$WORK/b.in"
LINGER=0 "$WS" "ws://$LB/signaling" <"$WORK/b.in" >"$WORK/b.out" 2>&1 &
PIDS+=($!)
exec 4>"$WORK/b.in"
echo '{"type":"auth","userId":"bob","roomId":"smoke"}' >&4
echo '{"type":"join-room","roomId":"smoke"}' >&4
wait_for "$WORK/b.out" '"room-joined"' "bob joins through nginx"
grep -q '"userId":"alice"' "$WORK/b.out" || fail "bob's room-joined lists alice: $(cat "$WORK/b.out")"
echo '{"type":"sdp-offer","roomId":"smoke","data":{"peer":"alice","offer":{"type":"offer","sdp":"smoke-sdp"}}}' >&4
wait_for "$WORK/a.out" 'smoke-sdp' "alice receives bob's offer"
# They are on different nodes: each node's peer gauge counts only its own.
busy=0
for n in "${NODE_HTTP[@]}"; do
  c=$(curl -s "http://$n/metrics" | awk '/^switchboard_peers_active /{print $2}')
  [ "${c:-0}" != 0 ] && busy=$((busy + 1))
done
[ "$busy" = 2 ] || fail "alice and bob should be on two nodes (round robin), found peers on $busy"
exec 4>&-
exec 3>&-
echo "cluster smoke test passed: 3 nodes behind nginx (round robin), a room seen from every node, two peers on two nodes exchanged a signal"
