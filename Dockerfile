# Switchboard in a container: built in a Rust image, run from a distroless one as a non-root
# user. `docker compose up --build` runs three of these behind nginx with Redis
# (docker-compose.yml); render.yaml deploys it on Render.
#
#   docker build -t switchboard .
#   docker run --rm -p 3000:3000 switchboard                       # one node, in memory
#   docker run --rm -p 3000:3000 -e REDIS_URL=redis://host:6379 switchboard   # a cluster node

# --- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not refetch them.
# (Not rust-toolchain.toml: the image's own stable toolchain builds it, nothing to download.)
COPY Cargo.toml Cargo.lock ./
COPY crates/switchboard-core/Cargo.toml crates/switchboard-core/Cargo.toml
COPY crates/switchboard-cluster/Cargo.toml crates/switchboard-cluster/Cargo.toml
COPY crates/switchboard/Cargo.toml crates/switchboard/Cargo.toml
COPY crates/switchboard-bench/Cargo.toml crates/switchboard-bench/Cargo.toml
# (Stub targets: cargo reads every member's manifest, and a manifest needs a target.)
RUN mkdir -p crates/switchboard-core/src crates/switchboard-cluster/src crates/switchboard/src \
    crates/switchboard-bench/src \
 && touch crates/switchboard-core/src/lib.rs crates/switchboard-cluster/src/lib.rs \
 && echo 'fn main() {}' > crates/switchboard/src/main.rs \
 && echo 'fn main() {}' > crates/switchboard-bench/src/main.rs \
 && cargo fetch --locked
# The server embeds the browser SDK (clients/js/dist) and the demo (demo/) at compile time.
COPY crates crates
COPY clients/js/dist clients/js/dist
COPY clients/yjs/src clients/yjs/src
COPY demo demo
COPY README.md README.md
RUN cargo build --release --locked -p switchboard \
 && install -D -m 0755 target/release/switchboard /out/switchboard
# The release profile keeps line tables (for scripts/profile.sh): 31 MB of the 40 MB binary.
# The image gets it without them (symbols stay, so a panic's backtrace still names functions).
RUN strip --strip-debug /out/switchboard

# --- run -----------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc only, no shell; runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
USER nonroot:nonroot
ENV HOST=0.0.0.0 LOG_FORMAT=json
# PORT serves the API, probes, metrics and every WebSocket endpoint; SIGNALING_PORT and
# SOCKETIO_PORT serve the seeds' dedicated ports.
EXPOSE 3000 3001 4000
ENTRYPOINT ["/usr/local/bin/switchboard"]
