#!/usr/bin/env bash
# Local stand-ins for the official images that the Dockerfile and docker-compose.yml name by
# default (rust, postgres), built from the Debian base .ci/rabbitmq4.sh makes, since no image
# registry is reachable here; RabbitMQ is that script's image. Idempotent: an existing image is
# kept. Prints the builder and PostgreSQL image names, one per line.
#
# The Rust version is the one of the Dockerfile's default builder image (rust:<version>-...), so
# both builders compile with the same compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=chatnode-ci/debian:trixie
rust_version=$(sed -n 's/^ARG BUILDER_IMAGE=rust:\([0-9.]*\)-.*/\1/p' Dockerfile)
[[ -n $rust_version ]] || { echo "deploy-images.sh: ERROR: no rust:<version> builder in Dockerfile" >&2; exit 1; }
BUILDER_IMAGE=chatnode-ci/rust:$rust_version
PG_IMAGE=chatnode-ci/postgres:17

buildlog=/tmp/chatnode-deploy-images.log

log() { echo "== [deploy-images ${SECONDS}s] $*" >&2; }
die() { echo "deploy-images.sh: ERROR: $*" >&2; exit 1; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
# Classic builder (the engine is Debian's 20.10, there may be no buildx); host network, so the
# build reaches the mirror and static.rust-lang.org exactly as the host does; --force-rm, so
# a failed step leaves no container behind.
build() { DOCKER_BUILDKIT=0 docker build --force-rm --network host "$@"; }

image_exists "$BASE_IMAGE" || die "$BASE_IMAGE missing; run .ci/rabbitmq4.sh first"
[[ $(uname -m) == x86_64 ]] || die "rustup-init is fetched for x86_64 only"

if ! image_exists "$BUILDER_IMAGE"; then
    log "building $BUILDER_IMAGE (Debian's C toolchain, Rust $rust_version from rustup)"
    # The certificate authorities this host trusts beyond Debian's go into the image, so HTTPS
    # (rustup, crates.io) works in the build where the host reaches the internet through an
    # intercepting proxy; an empty directory where there are none.
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    mkdir "$context/ca"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
    # Same layout as the official rust image (RUSTUP_HOME, CARGO_HOME, PATH), so the Dockerfile's
    # builder stage runs unchanged on either.
    build --build-arg "RUST_VERSION=$rust_version" -t "$BUILDER_IMAGE" -f - "$context" \
        >"$buildlog" 2>&1 <<DOCKERFILE || { tail -n 20 "$buildlog" >&2; die "building $BUILDER_IMAGE failed (see $buildlog)"; }
FROM $BASE_IMAGE
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:\$PATH
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates curl gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/* \\
 && update-ca-certificates \\
 && curl -sSfL --retry 2 -o /tmp/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \\
 && chmod +x /tmp/rustup-init \\
 && /tmp/rustup-init -y -q --no-modify-path --profile minimal --default-toolchain "\$RUST_VERSION" \\
 && rm /tmp/rustup-init \\
 && cargo --version
DOCKERFILE
fi

if ! image_exists "$PG_IMAGE"; then
    log "building $PG_IMAGE (Debian's postgresql-17)"
    # policy-rc.d keeps the package from starting a server; its default cluster is dropped, the
    # entrypoint makes one on first start like the official image does.
    build -t "$PG_IMAGE" -f - .ci/postgres >"$buildlog" 2>&1 <<DOCKERFILE \
        || { tail -n 20 "$buildlog" >&2; die "building $PG_IMAGE failed (see $buildlog)"; }
FROM $BASE_IMAGE
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-17 \\
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \\
 && pg_dropcluster 17 main \\
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/17/bin:\$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
DOCKERFILE
fi

echo "$BUILDER_IMAGE"
echo "$PG_IMAGE"
