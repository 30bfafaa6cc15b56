# The checks of `scripts/cluster.sh --smoke`, for a cluster that something else started
# (scripts/containers.sh: the docker-compose.yml topology under podman). Source it, then
#   cluster_smoke LB_ADDR WORKDIR NODE_ADDR...
# LB_ADDR and NODE_ADDR are host:port of the load balancer and of each node's PORT; WORKDIR
# is a scratch directory; the ws example client is ${WS_CLIENT} (built if missing). Returns
# non-zero with a message on the first failed check. Peers it starts are stopped by PID.
cluster_smoke() {
  local LB=$1 WORK=$2; shift 2
  local NODES=("$@") n c busy=0 nodes room
  local ws_pids=()
  _smoke_fail() {
    echo "cluster smoke test FAILED: $*" >&2
    exec 3>&- 4>&- 2>/dev/null || true
    local p; for p in "${ws_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    return 1
  }
  _smoke_wait_for() { # file pattern what
    local _
    for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    _smoke_fail "$3 (no $2 in $(basename "$1"): $(cat "$1" 2>/dev/null))"
  }
  # Round robin: three requests reach three nodes.
  nodes=$(for _ in 1 2 3; do curl -s "http://$LB/api/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])'; done | sort -u | wc -l)
  [ "$nodes" = 3 ] || { _smoke_fail "three requests through nginx reached $nodes node(s), not 3"; return 1; }
  # A room created through one node is seen through the others.
  room=$(curl -s -X POST "http://$LB/api/rooms" -H 'Content-Type: application/json' -d '{"roomId":"smoke"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["roomId"])')
  [ "$room" = smoke ] || { _smoke_fail "POST /api/rooms through nginx"; return 1; }
  for n in "${NODES[@]}"; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$n/api/rooms/smoke")" = 200 ] || { _smoke_fail "room not visible on $n"; return 1; }
  done
  # Two WebSocket peers through nginx land on different nodes and exchange a signal.
  [ -x "$WS_CLIENT" ] || cargo build -q -p switchboard --example ws
  mkfifo "$WORK/a.in" "$WORK/b.in"
  LINGER=0 "$WS_CLIENT" "ws://$LB/signaling" <"$WORK/a.in" >"$WORK/a.out" 2>&1 &
  ws_pids+=($!)
  exec 3>"$WORK/a.in"
  echo '{"type":"auth","userId":"alice","roomId":"smoke"}' >&3
  echo '{"type":"join-room","roomId":"smoke"}' >&3
  _smoke_wait_for "$WORK/a.out" '"room-joined"' "alice joins through nginx" || return 1
  LINGER=0 "$WS_CLIENT" "ws://$LB/signaling" <"$WORK/b.in" >"$WORK/b.out" 2>&1 &
  ws_pids+=($!)
  exec 4>"$WORK/b.in"
  echo '{"type":"auth","userId":"bob","roomId":"smoke"}' >&4
  echo '{"type":"join-room","roomId":"smoke"}' >&4
  _smoke_wait_for "$WORK/b.out" '"room-joined"' "bob joins through nginx" || return 1
  grep -q '"userId":"alice"' "$WORK/b.out" || { _smoke_fail "bob's room-joined lists alice: $(cat "$WORK/b.out")"; return 1; }
  echo '{"type":"sdp-offer","roomId":"smoke","data":{"peer":"alice","offer":{"type":"offer","sdp":"smoke-sdp"}}}' >&4
  _smoke_wait_for "$WORK/a.out" 'smoke-sdp' "alice receives bob's offer" || return 1
  # They are on different nodes: each node's peer gauge counts only its own.
  for n in "${NODES[@]}"; do
    c=$(curl -s "http://$n/metrics" | awk '/^switchboard_peers_active /{print $2}')
    [ "${c:-0}" != 0 ] && busy=$((busy + 1))
  done
  [ "$busy" = 2 ] || { _smoke_fail "alice and bob should be on two nodes (round robin), found peers on $busy"; return 1; }
  exec 4>&- 3>&-
  local p; for p in "${ws_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "cluster smoke test passed: 3 nodes behind nginx (round robin), a room seen from every node, two peers on two nodes exchanged a signal"
}
