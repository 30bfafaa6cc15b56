# Sourced by the load scripts (bench.sh, bench-cluster.sh, profile.sh, soak.sh): the one way
# they start Switchboard for a load run. Every listener on a free loopback port; the
# per-client limits and memory thresholds a load test would rightly trip are lifted (they
# have their own tests); everything else is the default.
LOAD_SERVER_ENV=(
  HOST=127.0.0.1 PORT=0 SIGNALING_PORT=0 SOCKETIO_PORT=0
  MAX_MESSAGES_PER_SECOND=0 MAX_CONNECTIONS_PER_IP=0 HTTP_REQUESTS_PER_SECOND=0
  ROOM_CREATIONS_PER_MINUTE=0 MAX_ROOMS=0
  MEMORY_CRITICAL_THRESHOLD=4096 MEMORY_WARNING_THRESHOLD=4096 LOG_LEVEL=warn
)

# listening_addr FILE KEY: the address the server printed on its "listening" line for KEY
# (http, signaling or socketio); empty when it has not printed it.
listening_addr() {
  grep -m1 '^listening ' "$1" | grep -o "$2=[^ ]*" | cut -d= -f2 || true
}
