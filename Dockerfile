# syntax=docker/dockerfile:1
# Easel images: one Dockerfile, three targets (docs/deploy.md):
#   docker build --target gateway     -t easel-gateway .      FastAPI gateway, no torch
#   docker build --target worker-cpu  -t easel-worker-cpu .   worker, torch CPU build
#   docker build --target worker-cuda -t easel-worker-cuda .  worker, torch CUDA build
# All run as the unprivileged user `easel` (uid 10001) and read settings from EASEL_* variables.

# Base image: a build argument so that a machine that cannot pull from a registry can build
# on a stand-in of the same Python made from its distribution's packages (scripts/container-smoke.sh).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# A fixed uid so volumes keep the same owner across rebuilds and hosts. /data is created here,
# owned by easel, so a fresh named volume mounted on it inherits that owner.
RUN groupadd --system --gid 10001 easel \
    && useradd --system --uid 10001 --gid easel --create-home --home-dir /home/easel \
       --shell /usr/sbin/nologin easel \
    && mkdir -p /data/files /models \
    && chown -R easel:easel /data
WORKDIR /home/easel

# Builds the easel wheel; the runtime stages install it after its dependencies, at the exact
# versions of constraints.txt (the file `make` and CI install from; torch is pinned apart).
FROM base AS builder
COPY pyproject.toml README.md constraints.txt /src/
# /deps: the dependency lists of pyproject.toml (the gateway's; the workers' with the `worker`
# extra) and constraints.txt. The runtime stages install them in a layer of their own, which a
# code change leaves cached: only pyproject.toml or constraints.txt rebuilds it.
RUN mkdir /deps && cp /src/constraints.txt /deps/ \
    && python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
base = p['dependencies']; worker = base + p['optional-dependencies']['worker']; \
open('/deps/gateway.txt', 'w').write('\n'.join(base) + '\n'); \
open('/deps/worker.txt', 'w').write('\n'.join(worker) + '\n')"
COPY core /src/core
COPY service /src/service
COPY workers /src/workers
COPY models /src/models
COPY cli /src/cli
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src

FROM base AS gateway
COPY --from=builder /deps /deps
# The gateway's dependencies only (pyproject's base list): it never imports torch.
RUN pip install --no-cache-dir --constraint /deps/constraints.txt \
        --requirement /deps/gateway.txt && rm -rf /deps
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/easel-*.whl && rm -rf /wheels
ENV EASEL_HOST=0.0.0.0 \
    EASEL_PORT=8000 \
    EASEL_STORAGE_DIR=/data/files
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EASEL_PORT', '8000') + '/healthz', timeout=4)"]
CMD ["easel", "serve"]

FROM base AS worker-cpu
ARG TORCH_VERSION=2.13.0
# torch first, from the CPU index: resolved from PyPI it would be the multi-GB CUDA build. The
# index is a build argument (a mirror, or scripts/container-smoke.sh's local wheel) and needs to
# hold torch only: --no-deps, the next step installs torch's dependencies at constraints.txt's
# versions along with Easel's.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --from=builder /deps /deps
RUN pip install --no-cache-dir --constraint /deps/constraints.txt \
        --requirement /deps/worker.txt && rm -rf /deps
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/easel-*.whl && rm -rf /wheels
# HF_HUB_OFFLINE: weights come from the image or the /models volume, never from a hub per job.
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning on shared cores.
# EASEL_METRICS_HOST=0.0.0.0: the container's own interfaces, where Prometheus scrapes it (the
# port reaches other hosts only if published; Easel's default outside a container is 127.0.0.1).
ENV EASEL_DEVICE=cpu \
    EASEL_METRICS_HOST=0.0.0.0 \
    EASEL_METRICS_PORT=9100 \
    EASEL_STORAGE_DIR=/data/files \
    HF_HOME=/models/huggingface \
    HF_HUB_OFFLINE=1 \
    OMP_WAIT_POLICY=PASSIVE
USER 10001:10001
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EASEL_METRICS_PORT', '9100') + '/metrics', timeout=4)"]
CMD ["easel", "worker"]

FROM base AS worker-cuda
ARG TORCH_VERSION=2.13.0
# PyPI's Linux torch wheel is the CUDA build: it brings the CUDA runtime and cuDNN as pip
# packages, so the image needs only the host's driver, which the NVIDIA container toolkit mounts.
# --no-deps as above: the next step brings torch's dependencies (nvidia-* included).
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --from=builder /deps /deps
RUN pip install --no-cache-dir --constraint /deps/constraints.txt \
        --requirement /deps/worker.txt && rm -rf /deps
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/easel-*.whl && rm -rf /wheels
ENV EASEL_DEVICE=cuda \
    EASEL_DTYPE=float16 \
    EASEL_METRICS_HOST=0.0.0.0 \
    EASEL_METRICS_PORT=9100 \
    EASEL_STORAGE_DIR=/data/files \
    HF_HOME=/models/huggingface \
    HF_HUB_OFFLINE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 9100
# Large checkpoints take minutes to load: the metrics port opens only once they are resident.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('EASEL_METRICS_PORT', '9100') + '/metrics', timeout=4)"]
CMD ["easel", "worker"]
