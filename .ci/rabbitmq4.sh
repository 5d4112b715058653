#!/usr/bin/env bash
# Provision a local Docker engine and a RabbitMQ 4 image for the integration
# tests, on a Debian 12 host with no image registry reachable (only Debian's
# apt mirror). Idempotent: each step is skipped when its result already exists.
#
#   .ci/rabbitmq4.sh               install/start/build as needed, then verify
#   .ci/rabbitmq4.sh --check-only  only report whether engine and image exist
#
# Environment overrides:
#   CHATNODE_DEBIAN_MIRROR  Debian mirror URL (default: the one host apt uses)
#   CHATNODE_DOCKERD_LOG    dockerd log file (default: /tmp/chatnode-dockerd.log)
set -euo pipefail

SUITE=trixie                      # trixie's rabbitmq-server is 4.0.x
BASE_IMAGE=chatnode-ci/debian:trixie
RMQ_IMAGE=chatnode-ci/rabbitmq:4
DOCKERD_LOG=${CHATNODE_DOCKERD_LOG:-/tmp/chatnode-dockerd.log}
WAIT_SECS=60

log() { echo "== [${SECONDS}s] $*"; }
die() { echo "rabbitmq4.sh: ERROR: $*" >&2; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

if [[ ${1:-} == --check-only ]]; then
    rc=0
    if engine_up; then
        echo "engine: up ($(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}'))"
        for img in "$BASE_IMAGE" "$RMQ_IMAGE"; do
            if image_exists "$img"; then echo "image $img: present"; else echo "image $img: missing"; rc=1; fi
        done
    else
        echo "engine: not running (or docker CLI missing)"; rc=1
    fi
    exit "$rc"
elif [[ $# -gt 0 ]]; then
    die "usage: $0 [--check-only]"
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, starts dockerd)"

# ---- 1. packages -----------------------------------------------------------
# Recommends skipped: cgroups are already mounted, and needrestart/criu/git are
# not needed (debootstrap verifies with debian-archive-keyring, which apt needs).
missing=()
for pkg in docker.io debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    aptlog=/tmp/chatnode-apt.log
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1 \
        || { tail -n 20 "$aptlog" >&2; die "apt-get install ${missing[*]} failed (see $aptlog)"; }
fi

# ---- 2. engine -------------------------------------------------------------
if ! engine_up; then
    if pgrep -x dockerd >/dev/null; then
        log "dockerd already running but not answering yet; waiting"
    else
        log "starting dockerd (log: $DOCKERD_LOG)"
        # setsid -f: fully detached, so dockerd outlives this script and CI step.
        setsid -f /usr/sbin/dockerd >"$DOCKERD_LOG" 2>&1 </dev/null
    fi
    for ((i = 0; i < WAIT_SECS; i++)); do
        engine_up && break
        sleep 1
    done
    engine_up || { tail -n 20 "$DOCKERD_LOG" >&2 || true; die "docker engine not up after ${WAIT_SECS}s (see $DOCKERD_LOG)"; }
fi
log "engine: $(docker version --format 'client {{.Client.Version}}, server {{.Server.Version}} (API {{.Server.APIVersion}})')"

# ---- mirror ----------------------------------------------------------------
# The Debian mirror host apt already uses (may be a proxy); trixie must be on it.
mirror=${CHATNODE_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
    # shellcheck source=/dev/null
    . /etc/os-release
    # shellcheck disable=SC2016  # $(SITE) is apt's format syntax, not shell
    mirror=$(apt-get indextargets --format '$(SITE)' "Release: ${VERSION_CODENAME:-bookworm}" \
        'Origin: Debian' 'Identifier: Packages' 'Component: main' | head -n 1)
fi
[[ -n $mirror ]] || die "cannot find the Debian mirror in apt's sources; set CHATNODE_DEBIAN_MIRROR"
mirror=${mirror%/}

need_build() { ! image_exists "$BASE_IMAGE" || ! image_exists "$RMQ_IMAGE"; }
if need_build; then
    wget -q -T 15 -t 2 -O /dev/null "$mirror/dists/$SUITE/InRelease" \
        || die "Debian $SUITE not reachable at $mirror (set CHATNODE_DEBIAN_MIRROR)"
    log "mirror: $mirror ($SUITE reachable)"
fi

# ---- 3. base image ---------------------------------------------------------
workdir=
cid=
cleanup() {
    [[ -n $cid ]] && docker rm -f "$cid" >/dev/null 2>&1
    [[ -n $workdir ]] && rm -rf "$workdir"
    return 0
}
trap cleanup EXIT

if ! image_exists "$BASE_IMAGE"; then
    log "building $BASE_IMAGE with debootstrap"
    workdir=$(mktemp -d /var/tmp/chatnode-rootfs.XXXXXX)
    debootstrap --variant=minbase "$SUITE" "$workdir/rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 \
        || { tail -n 20 "$workdir/debootstrap.log" >&2; die "debootstrap $SUITE failed"; }
    # debootstrap leaves ~90 MB of apt lists and caches; the image build runs
    # apt-get update anyway.
    rm -rf "$workdir"/rootfs/var/lib/apt/lists/* "$workdir"/rootfs/var/cache/apt/*.bin
    tar -C "$workdir/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null \
        || die "docker import of $BASE_IMAGE failed"
    rm -rf "$workdir"; workdir=
fi

# ---- 4. RabbitMQ image -----------------------------------------------------
if ! image_exists "$RMQ_IMAGE"; then
    log "building $RMQ_IMAGE"
    # policy-rc.d stops the package's postinst from trying to start the service.
    # --network host: the build reaches the mirror exactly as the host does
    # (works even if the mirror is a localhost proxy; no bridge NAT/DNS needed).
    # DOCKER_BUILDKIT=0: the daemon is 20.10 and there may be no buildx plugin.
    buildlog=/tmp/chatnode-rabbitmq-build.log
    DOCKER_BUILDKIT=0 docker build --network host --build-arg "MIRROR=$mirror" \
        -t "$RMQ_IMAGE" - >"$buildlog" 2>&1 <<EOF \
        || { tail -n 20 "$buildlog" >&2; die "docker build of $RMQ_IMAGE failed (see $buildlog)"; }
FROM $BASE_IMAGE
ARG MIRROR
RUN echo "deb \$MIRROR $SUITE main" > /etc/apt/sources.list \\
 && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server \\
 && rm -rf /var/lib/apt/lists/* \\
 && echo 'loopback_users.guest = false' >> /etc/rabbitmq/rabbitmq.conf
ENV RABBITMQ_LOGS=-
EXPOSE 5672
CMD ["rabbitmq-server"]
EOF
fi

# ---- 5. verify ---------------------------------------------------------------
log "verifying $RMQ_IMAGE"
cid=$(docker run -d -p 127.0.0.1::5672 "$RMQ_IMAGE") || die "docker run $RMQ_IMAGE failed"
ready=
for ((i = 0; i < WAIT_SECS; i++)); do
    # Not "docker logs | grep -q": with pipefail, grep exiting early can make
    # docker logs die of SIGPIPE and turn a match into a failure.
    if grep -q 'Server startup complete' <<<"$(docker logs "$cid" 2>&1)"; then ready=1; break; fi
    [[ $(docker inspect -f '{{.State.Running}}' "$cid") == true ]] || break
    sleep 1
done
if [[ -z $ready ]]; then
    docker logs --tail 30 "$cid" >&2 || true
    die "RabbitMQ did not log 'Server startup complete' within ${WAIT_SECS}s"
fi
port=$(docker port "$cid" 5672/tcp | head -n 1)
port=${port##*:}
# bash's /dev/tcp: a plain TCP connect, no extra tools needed.
timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null \
    || die "port 127.0.0.1:$port (container 5672) does not accept connections"
log "RabbitMQ ready after ~${i}s, 127.0.0.1:$port accepts connections"
docker rm -f "$cid" >/dev/null; cid=

echo "$RMQ_IMAGE"
