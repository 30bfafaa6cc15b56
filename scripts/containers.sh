#!/usr/bin/env bash
# Builds the unmodified Dockerfile and runs the unmodified docker-compose.yml with Debian's
# podman, and checks both (the test command runs this once):
#   - the image builds, is at most 30 MB, runs as uid 65532, answers /healthz, and refuses
#     the default AUTH_SECRET with NODE_ENV=production (exit 64) while starting with a real one;
#   - the compose topology (Redis, three nodes, nginx on :8080) passes the checks of
#     `scripts/cluster.sh --smoke` (scripts/lib/cluster-smoke.sh), and nginx has the fixed
#     address the nodes trust (TRUSTED_PROXIES).
#
#   scripts/containers.sh            everything above
#   scripts/containers.sh --bases    only build the stand-in base images (below)
#
# No registry is reachable from CI, so the base images the files name are built here from
# Debian packages with mmdebstrap and tagged with those names (deploy/containers/):
#   rust:1-bookworm                        Debian bookworm + gcc + the host's stable toolchain
#   gcr.io/distroless/cc-debian12:nonroot  glibc, libgcc, base-files, netbase; user nonroot (65532)
#   redis:7-alpine                         Debian's redis-server (protected mode off, as the official image)
#   nginx:1.27-alpine                      Debian's nginx, in the foreground
# They are cached in podman's store, labelled with a hash of how they were made (this file's
# build_bases, deploy/containers/, the toolchain's version, the mirror), and rebuilt only when
# that changes; the Dockerfile's own layers are podman's build cache (a source change rebuilds
# the release binary, the dependency fetch stays cached).
#
# Podman here: runc (crun fails on hybrid cgroups), ulimits within the host's hard limits
# (podman's defaults exceed them and runc cannot raise them): a containers.conf of our own
# (CONTAINERS_CONF) says so, system config untouched. Debian's podman-compose 1.0.3 ignores
# the compose file's ipam subnet and ipv4_address, so podman-compose 1.0.6 comes from PyPI.
# Needs root (rootful podman), apt-get for the packages when missing, python3 with pip.
# Containers, networks and processes it starts are removed/stopped when it exits; the
# compose file publishes port 8080, which must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BASES_ONLY=0
[ "${1:-}" = "--bases" ] && BASES_ONLY=1
die() { echo "containers.sh: $*" >&2; exit 1; }
t0=$SECONDS
say() { printf '[containers %3ds] %s\n' $((SECONDS - t0)) "$*"; }
[ "$(id -u)" = 0 ] || die "needs root (rootful podman)"

# --- tools -----------------------------------------------------------------------------------
missing=()
for c in podman:podman runc:runc mmdebstrap:mmdebstrap netavark:/usr/lib/podman/netavark \
         aardvark-dns:/usr/lib/podman/aardvark-dns iptables:iptables curl:curl; do
  pkg=${c%%:*}; bin=${c#*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "$bin" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" catatonit uidmap >/dev/null
fi
CACHE=${SWITCHBOARD_CONTAINERS_CACHE:-/var/cache/switchboard-containers}
PC_VERSION=1.0.6
if ! PYTHONPATH="$CACHE/podman-compose-$PC_VERSION" python3 -c 'import podman_compose' 2>/dev/null; then
  say "installing podman-compose $PC_VERSION (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$CACHE/podman-compose-$PC_VERSION" "podman-compose==$PC_VERSION"
fi
podman_compose() { PYTHONPATH="$CACHE/podman-compose-$PC_VERSION" python3 -c 'import sys, podman_compose; sys.argv[0] = "podman-compose"; sys.exit(podman_compose.main())' "$@"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-containers.XXXXXX")
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=1024:1024"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
EOF
export CONTAINERS_CONF="$WORK/containers.conf"
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=1024:1024")

PROJECT=switchboard-containers-check
CONTAINERS=()
cleanup() {
  local status=$?
  if [ $status -ne 0 ] && [ -n "$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null)" ]; then
    echo "--- compose logs ---" >&2
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
      { echo "== $c"; podman logs --tail 20 "$c" 2>&1; } >&2
    done
  fi
  for c in "${CONTAINERS[@]}"; do podman rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  if [ -n "$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null)" ]; then
    podman_compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" down -t 2 >/dev/null 2>&1 || true
  fi
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- stand-in base images --------------------------------------------------------------------
# The host's Debian mirror (the same sources apt uses), for mmdebstrap.
debian_sources() {
  local main sec
  main=$(grep -rhoE '^(URIs:|deb) *[a-z]+://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -n1 || true)
  sec=$(grep -rhoE '^(URIs:|deb) *[a-z]+://[^ ]*/debian-security/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -n1 || true)
  main=${main:-http://deb.debian.org/debian}; sec=${sec:-http://deb.debian.org/debian-security}
  printf '%s\n' "deb $main bookworm main" "deb $main bookworm-updates main" "deb $sec bookworm-security main"
}
SYSROOT=$(rustc --print sysroot)
# The stand-ins trust the certificate authorities the host trusts (the Dockerfile's
# `cargo fetch` reaches crates.io the way the host does, TLS-intercepting proxy included).
HOST_CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$HOST_CA" ] || die "$HOST_CA missing (apt-get install -y ca-certificates)"
build_bases() { # tag
  local tag=$1 mirrors=() l
  while IFS= read -r l; do mirrors+=("$l"); done < <(debian_sources)
  local nodoc=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
               --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*'
               --dpkgopt='force-unsafe-io')
  # One bookworm root for the three Debian-based stand-ins (one essential-set install, not
  # three), and the distroless one: packages extracted only (no shell, no dpkg, no apt; an
  # extract-hook, as the extract variant runs no customize hooks).
  say "mmdebstrap: bookworm with gcc, libc6-dev, redis-server, nginx; distroless cc"
  mmdebstrap -q --variant=minbase --skip=output/dev "${nodoc[@]}" \
    --include=ca-certificates,gcc,libc6-dev,redis-server,nginx \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    --customize-hook="cp $HOST_CA \"\$1/etc/ssl/certs/ca-certificates.crt\"" \
    bookworm - "${mirrors[@]}" \
    | podman import -q --change 'CMD=["bash"]' --change "LABEL=switchboard.standin=$tag" - "localhost/switchboard-standin-bookworm:$tag" >/dev/null &
  local deb_pid=$!
  mmdebstrap -q --variant=extract --skip=output/dev --include=base-files,netbase,libc6,libgcc-s1 \
    --extract-hook='cd "$1" && rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/lib/x86_64-linux-gnu/gconv usr/bin/mawk' \
    --extract-hook='cd "$1" && printf "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" > etc/passwd && printf "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n" > etc/group && printf "hosts: files dns\n" > etc/nsswitch.conf && mkdir -p home/nonroot tmp && chown 65532:65532 home/nonroot && chmod 700 home/nonroot && chmod 1777 tmp' \
    bookworm - "${mirrors[@]}" \
    | podman import -q --change 'USER=65532' --change 'WORKDIR=/home/nonroot' \
        --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL=switchboard.standin=$tag" - gcr.io/distroless/cc-debian12:nonroot >/dev/null
  wait $deb_pid || die "mmdebstrap of the bookworm stand-in failed"
  local base="localhost/switchboard-standin-bookworm:$tag"
  say "stand-ins from it: rust:1-bookworm (toolchain $("$SYSROOT/bin/rustc" --version)), redis:7-alpine, nginx:1.27-alpine"
  podman build -q "${ULIMITS[@]}" --build-arg "BASE=$base" --label "switchboard.standin=$tag" \
    -f "$ROOT/deploy/containers/rust.Containerfile" -t docker.io/library/rust:1-bookworm "$SYSROOT" >/dev/null
  podman build -q "${ULIMITS[@]}" --build-arg "BASE=$base" --label "switchboard.standin=$tag" \
    -f "$ROOT/deploy/containers/redis.Containerfile" -t docker.io/library/redis:7-alpine "$ROOT/deploy/containers" >/dev/null
  podman build -q "${ULIMITS[@]}" --build-arg "BASE=$base" --label "switchboard.standin=$tag" \
    -f "$ROOT/deploy/containers/nginx.Containerfile" -t docker.io/library/nginx:1.27-alpine "$ROOT/deploy/containers" >/dev/null
}
TAG=$( { declare -f build_bases debian_sources; debian_sources; "$SYSROOT/bin/rustc" -vV; cat "$ROOT"/deploy/containers/* "$HOST_CA"; } | sha256sum | cut -c1-16)
stale=0
for img in docker.io/library/rust:1-bookworm gcr.io/distroless/cc-debian12:nonroot \
           docker.io/library/redis:7-alpine docker.io/library/nginx:1.27-alpine; do
  [ "$(podman image inspect -f '{{index .Labels "switchboard.standin"}}' "$img" 2>/dev/null)" = "$TAG" ] || stale=1
done
if [ $stale = 1 ]; then
  build_bases "$TAG"
  # Earlier stand-ins' roots and dangling layers.
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/switchboard-standin-bookworm); do
    [ "$old" = "localhost/switchboard-standin-bookworm:$TAG" ] || podman rmi -f "$old" >/dev/null 2>&1 || true
  done
  podman image prune -f >/dev/null 2>&1 || true
else
  say "stand-in base images cached ($TAG)"
fi
[ $BASES_ONLY = 1 ] && { say "stand-in base images ready"; exit 0; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
fail() { echo "containers check FAILED: $*" >&2; exit 1; }
wait_ready() { # url seconds
  local _
  for _ in $(seq 1 $(($2 * 10))); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
ctr_ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }

# --- the image -------------------------------------------------------------------------------
IMAGE=switchboard:local  # the name docker-compose.yml gives it
say "podman build (the unmodified Dockerfile) -> $IMAGE"
tb=$SECONDS
podman build "${ULIMITS[@]}" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "podman build"; }
say "image built in $((SECONDS - tb))s"
# Keep this build's stage 1 (the compiled dependencies: the next run's cache) under a tag, and
# drop the untagged leftovers of earlier builds, so the store holds one of each.
podman build -q "${ULIMITS[@]}" --target build -t localhost/switchboard-containers-build-cache "$ROOT" >/dev/null
podman image prune -f >/dev/null
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
say "image size: $size bytes ($((size / 1000000)) MB)"
[ "$size" -le 30000000 ] || fail "image is $size bytes, more than 30 MB"

# One node, as the Dockerfile's header runs it.
P=$(free_port)
CONTAINERS+=(switchboard-containers-check-one)
podman run -d --name switchboard-containers-check-one -p "127.0.0.1:$P:3000" "$IMAGE" >/dev/null
wait_ready "http://127.0.0.1:$P/healthz" 20 || { podman logs switchboard-containers-check-one >&2; fail "/healthz did not answer 200 within 20 s"; }
say "GET /healthz through the published port: 200"
pid=$(podman inspect -f '{{.State.Pid}}' switchboard-containers-check-one)
uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "the server runs as uid $uid, not 65532"
say "the server process runs as uid $uid"
podman rm -f -t 5 switchboard-containers-check-one >/dev/null

# Production with the default secret: refused before binding (exit 64); with a real secret
# and an admin key it starts.
set +e
podman run --rm -e NODE_ENV=production -e ADMIN_API_KEY=containers-check-admin-key "$IMAGE" >"$WORK/prod.log" 2>&1
st=$?
set -e
[ $st = 64 ] || { cat "$WORK/prod.log" >&2; fail "NODE_ENV=production with the default secret exited $st, not 64"; }
grep -q AUTH_SECRET "$WORK/prod.log" || { cat "$WORK/prod.log" >&2; fail "the refusal does not name AUTH_SECRET"; }
say "NODE_ENV=production with the default AUTH_SECRET: refused, exit 64 ($(grep -o 'AUTH_SECRET[^"]*' "$WORK/prod.log" | head -n1))"
P=$(free_port)
CONTAINERS+=(switchboard-containers-check-prod)
podman run -d --name switchboard-containers-check-prod -p "127.0.0.1:$P:3000" -e NODE_ENV=production \
  -e AUTH_SECRET=containers-check-secret-0123456789 -e ADMIN_API_KEY=containers-check-admin-key "$IMAGE" >/dev/null
wait_ready "http://127.0.0.1:$P/healthz" 20 || { podman logs switchboard-containers-check-prod >&2; fail "production with a real secret did not start"; }
say "NODE_ENV=production with a real secret and admin key: starts, /healthz 200"
podman rm -f -t 5 switchboard-containers-check-prod >/dev/null

# --- the compose topology --------------------------------------------------------------------
python3 -c 'import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.close()' 2>/dev/null \
  || fail "port 8080 (published by docker-compose.yml) is in use: $(ss -ltnp 'sport = :8080' 2>/dev/null | tail -n +2)"
say "podman-compose up (the unmodified docker-compose.yml): Redis, node1-3, nginx"
tc=$SECONDS
podman_compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" up -d >"$WORK/compose.log" 2>&1 \
  || { tail -n 40 "$WORK/compose.log" >&2; fail "podman-compose up"; }
NODES=()
for s in node1 node2 node3; do
  ip=$(ctr_ip "${PROJECT}_${s}_1")
  [ -n "$ip" ] || fail "no address for $s"
  NODES+=("$ip:3000")
done
for n in "${NODES[@]}" 127.0.0.1:8080; do
  wait_ready "http://$n/readyz" 30 || {
    tail -n 20 "$WORK/compose.log" >&2
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}} {{.Status}}' >&2
    fail "$n not ready within 30 s"
  }
done
lb_ip=$(ctr_ip "${PROJECT}_lb_1")
[ "$lb_ip" = 172.28.0.10 ] || fail "nginx has address $lb_ip, not the 172.28.0.10 the nodes trust (TRUSTED_PROXIES)"
say "compose up in $((SECONDS - tc))s: nodes ${NODES[*]}, nginx $lb_ip (published 127.0.0.1:8080), all ready"
WS_CLIENT="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/ws"
# shellcheck source=lib/cluster-smoke.sh
. "$ROOT/scripts/lib/cluster-smoke.sh"
cluster_smoke 127.0.0.1:8080 "$WORK" "${NODES[@]}"
podman_compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" down -t 5 >/dev/null 2>&1
podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
say "containers check passed"
