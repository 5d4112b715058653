#!/usr/bin/env bash
# The deployment end to end (README "Deployment"), as .ci/run runs it: builds the chatnode image
# from this checkout on the local Debian base (the Dockerfile's base images are build arguments),
# starts docker-compose.yml under a project name of its own with the local PostgreSQL and
# RabbitMQ images, then .ci/compose-smoke.py: register on node 1, socket on node 2, a message
# sent on node 1 arrives. The cluster and its volumes are removed at exit, whatever happened.
#
# Needs: a Docker engine and the images of .ci/rabbitmq4.sh, Debian's docker-compose, python3
# with websockets.
set -euo pipefail
cd "$(dirname "$0")/.."

UP_TIMEOUT=240      # s for docker-compose up, which waits for the database's and broker's health
HEALTHY_TIMEOUT=90  # s for the three nodes to report healthy after that
SMOKE_TIMEOUT=90    # s for the client's whole run
IMAGE=chatnode-ci/chatnode:latest
RUNTIME_IMAGE=chatnode-ci/debian:trixie
RABBITMQ_IMAGE=chatnode-ci/rabbitmq:4

log() { echo "== [compose-smoke ${SECONDS}s] $*"; }
die() { echo "compose-smoke.sh: ERROR: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || die "docker-compose missing (apt-get install docker-compose)"
python3 -c 'import websockets' 2>/dev/null || die "Python's websockets missing (pip install websockets)"
docker image inspect "$RABBITMQ_IMAGE" >/dev/null 2>&1 || die "$RABBITMQ_IMAGE missing; run .ci/rabbitmq4.sh"

local_images=$(bash .ci/deploy-images.sh)
builder_image=$(sed -n 1p <<<"$local_images")
postgres_image=$(sed -n 2p <<<"$local_images")

log "building $IMAGE (builder $builder_image, runtime $RUNTIME_IMAGE)"
buildlog=/tmp/chatnode-compose-smoke-build.log
build_started=$SECONDS
DOCKER_BUILDKIT=0 docker build --force-rm --network host \
    --build-arg "BUILDER_IMAGE=$builder_image" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
    -t "$IMAGE" . >"$buildlog" 2>&1 \
    || { tail -n 30 "$buildlog" >&2; die "docker build failed (see $buildlog)"; }
log "image built in $((SECONDS - build_started)) s"
# The image this one replaced, now untagged, would pile up run after run; only the runtime
# stage carries the label, so the builder stage's dependency layer stays as the cache.
docker image prune -f --filter label=org.opencontainers.image.title=chatnode >/dev/null

project=chatnode-smoke-$$-$RANDOM
export COMPOSE_PROJECT_NAME=$project
export CHATNODE_IMAGE=$IMAGE CHATNODE_POSTGRES_IMAGE=$postgres_image
export CHATNODE_RABBITMQ_IMAGE=$RABBITMQ_IMAGE
export CHATNODE_BUILDER_IMAGE=$builder_image CHATNODE_RUNTIME_IMAGE=$RUNTIME_IMAGE
# Empty host ports: Docker picks free ones, so a run never collides with a node already here.
export CHATNODE_NODE1_PORT='' CHATNODE_NODE2_PORT='' CHATNODE_NODE3_PORT=''
export CHATNODE_BIND_ADDRESS=127.0.0.1
POSTGRES_PASSWORD=smoke$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export POSTGRES_PASSWORD
compose() { docker-compose -f docker-compose.yml -p "$project" "$@"; }

cleanup() {
    local rc=$?
    if ((rc != 0)); then
        echo "compose-smoke.sh: the cluster's last log lines:" >&2
        timeout 30 docker-compose -f docker-compose.yml -p "$project" logs --no-color --tail 30 >&2 || true
    fi
    timeout 60 docker-compose -f docker-compose.yml -p "$project" down -v --remove-orphans -t 10 \
        >/dev/null 2>&1 || echo "compose-smoke.sh: docker-compose down failed for $project" >&2
    exit "$rc"
}
trap cleanup EXIT

log "docker-compose up (project $project)"
up_started=$SECONDS
timeout "$UP_TIMEOUT" docker-compose -f docker-compose.yml -p "$project" up -d --no-build \
    || die "docker-compose up failed or took over ${UP_TIMEOUT} s"

for service in node1 node2 node3; do
    container=$(compose ps -q "$service")
    [[ -n $container ]] || die "$service has no container"
    status=
    for ((i = 0; i < HEALTHY_TIMEOUT; i++)); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$container")
        [[ $status == healthy || $status == unhealthy ]] && break
        sleep 1
    done
    [[ $status == healthy ]] || die "$service is '$status', not healthy"
done
log "postgres, rabbitmq and three nodes healthy $((SECONDS - up_started)) s after up"

urls=()
for service in node1 node2 node3; do
    address=$(compose port "$service" 8000)
    [[ $address == 127.0.0.1:* ]] || die "$service: no published port ('$address')"
    urls+=("http://$address")
done
timeout "$SMOKE_TIMEOUT" python3 .ci/compose-smoke.py "${urls[@]}" \
    || die "the message did not go from node1 to a socket on node2"
log "passed"
