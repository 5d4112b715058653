# The chatnode server image: a release build of the `chatnode` package (default transports plus
# PostgreSQL) on a slim Debian, run as an unprivileged user. README "Deployment".
#
#   docker build -t chatnode .
#
# Both base images are build arguments, so the same file builds from the official images
# (the defaults) or from local ones where no registry is reachable (.ci/compose-smoke.sh).
# The builder's Debian release should be the runtime's (the binary links that glibc).
# No BuildKit-only syntax: the classic builder (docker-compose 1.29) builds it too.
# Rust 1.95, what the project is built and tested with: the locked dependencies need more than
# Cargo.toml's rust-version (ordered-float 5.5 wants 1.90).
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
ARG CARGO_FEATURES=postgres
WORKDIR /build
# The dependencies first, in a layer keyed on the manifests and the lock file alone, so a
# change to the sources rebuilds chatnode only. Cargo needs every workspace member's manifest
# and each target a manifest names; empty files stand in for the sources in this layer, and
# chatnode's own artifacts built from them are cleaned before the real sources arrive.
COPY Cargo.toml Cargo.lock ./
COPY client/Cargo.toml client/
COPY bench/Cargo.toml bench/
RUN mkdir -p src client/src bench/src tests/it \
 && touch src/lib.rs client/src/lib.rs tests/it/main.rs \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && cargo build --release --locked -p chatnode --features "$CARGO_FEATURES" \
 && cargo clean --release -p chatnode \
 && rm -rf src client/src bench/src tests
COPY . .
# target/ is removed in the same layer: the layer keeps only the binary, and the dependency
# layer above stays the cache for the next build.
RUN cargo build --release --locked -p chatnode --features "$CARGO_FEATURES" \
 && install -D target/release/chatnode /out/chatnode \
 && rm -rf target

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="chatnode" \
      org.opencontainers.image.description="A WhatsApp-style chat server: REST + WebSocket, SQLite or PostgreSQL, RabbitMQ fan-out" \
      org.opencontainers.image.licenses="MIT"
# curl for the health check only; the binary needs nothing beyond libc.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/chatnode --no-create-home chatnode \
 && install -d -o chatnode -g chatnode -m 0750 /var/lib/chatnode
COPY --from=builder /out/chatnode /usr/local/bin/chatnode
USER chatnode
WORKDIR /var/lib/chatnode
# Inside a container the node must listen beyond loopback; the data directory (SQLite, media,
# node ids) is the volume.
ENV CHATNODE_LISTEN=0.0.0.0:8000 \
    CHATNODE_DATA_DIR=/var/lib/chatnode \
    CHATNODE_LOG_FORMAT=json
VOLUME ["/var/lib/chatnode"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8000/readyz || exit 1
ENTRYPOINT ["chatnode"]
CMD ["serve"]
