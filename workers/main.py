"""`easel worker`: load the configured pipelines once, then serve their RQ queues."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.serializers import JSONSerializer

from core import control, liveness
from core.allowed_jobs import EaselJob
from core.catalog import Catalog, PipelineSpec, load_catalog
from core.jobs import batch_queue
from core.logs import setup_logging
from core.redis_checks import check_redis_policy, wait_for_redis
from core.settings import WorkerSettings
from core.storage import make_storage
from core.telemetry import record_start
from workers import runtime
from workers.control import ControlThread, attach
from workers.finishing import finisher
from workers.heartbeat import Heartbeat, Timings
from workers.loading import load_all
from workers.metrics import WorkerMetrics, start_metrics_server
from workers.priority_queue import PriorityQueue
from workers.residency import Residency
from workers.worker import EaselWorker

log = logging.getLogger("easel.worker")


def _record_start(settings: WorkerSettings, base_name: str) -> None:
    """Count this start in Redis before anything can fail (a worker that dies loading its
    model is the usual crash loop): the gateway exports it as easel_worker_starts_total."""
    client = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        record_start(client, base_name)
    except RedisError as exc:  # Redis restarting: load the model meanwhile, then wait for it
        log.warning("could not record this start (%s)", exc)
    finally:
        client.close()


def run(settings: WorkerSettings) -> None:
    setup_logging(settings.log_json, component="worker")
    base_name = settings.name or f"easel-{socket.gethostname()}"
    _record_start(settings, base_name)
    # Weights are local or pre-downloaded: a worker never fetches from a hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers
    from diffusers.utils import logging as diffusers_logging

    transformers.logging.set_verbosity_error()  # e.g. optional-torchvision notices, each start
    transformers.logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    # Both libraries log through a stderr handler of their own: route them through ours, so
    # their warnings (e.g. at a LoRA load) are lines of the worker's log format, JSON included.
    for library in (transformers.logging, diffusers_logging):
        library.disable_default_handler()
        library.enable_propagation()

    from models.loading import Tuning, load_pipeline

    torch.set_num_threads(settings.threads)
    catalog = load_catalog(settings.models_file)
    names = settings.pipeline_names() or list(catalog.pipelines)
    unknown = [n for n in names if n not in catalog.pipelines]
    if unknown:
        raise SystemExit(f"unknown pipelines {unknown}; the catalog has {list(catalog.pipelines)}")
    tuning = Tuning(settings.channels_last, settings.compile, settings.vae_tiling,
                    settings.vae_slicing, settings.cpu_offload, settings.cpu_autocast)
    def load(spec: PipelineSpec, catalog: Catalog) -> Any:
        """A pipeline with its catalog adapters (LoRA, docs/models.md) preloaded."""
        loaded = load_pipeline(spec, settings.device, settings.dtype, tuning)
        loaded.attach_adapters(catalog.adapters_of(spec.name), settings.adapter_memory_mb * 2**20)
        return loaded

    pipelines, failed = load_all(
        [catalog.pipelines[n] for n in names], lambda spec: load(spec, catalog),
        settings.memory_budget_mb)
    names = list(pipelines)
    storage = make_storage(settings)
    metrics = WorkerMetrics(device=settings.device)
    metrics.pipelines_loaded({n: p.load_seconds for n, p in pipelines.items()})
    for pipeline_name, loaded in pipelines.items():
        metrics.resident.labels(pipeline_name).set(loaded.weight_bytes())
    metrics.info.info({"device": settings.device, "dtype": settings.dtype,
                       "pipelines": ",".join(names), "threads": str(settings.threads),
                       "bf16_autocast": str(any(p.autocast for p in pipelines.values())),
                       "torch": str(torch.__version__)})
    storage.on_error = metrics.storage_failed
    residency = Residency(catalog, load, pipelines, failed, metrics)
    runtime.install(runtime.Runtime(settings, pipelines, storage, metrics, residency))
    # Certificates, key and classifier are checked now, not at the first job's end.
    log.info("provenance: %s", finisher(settings).describe())
    redis = Redis.from_url(settings.redis_url)
    wait_for_redis(redis)
    check_redis_policy(redis)
    # Live queues first, then their batch twins: RQ takes queues in order, so batch work runs
    # only while no live job waits (core.jobs.batch_queue).
    live = [catalog.pipelines[n].queue for n in names]
    queues = live + [batch_queue(q) for q in live]
    name = liveness.process_name(base_name)
    if not queues:  # a restart would fail the same way: stay up, say why, take admin commands
        log.critical("no pipeline loaded; serving nothing until a checkpoint is fixed and "
                     "loaded with POST /v1/admin/pipelines/NAME/load (or the worker restarted)")
    # EaselJob: a job naming anything but Easel's render task is refused, never imported.
    # Nothing loaded: the private idle queue (RQ needs one) until an admin load (follow).
    worker = EaselWorker(queues or [control.idle_queue(name)], name=name, connection=redis,
                         serializer=JSONSerializer, job_class=EaselJob, queue_class=PriorityQueue)
    worker.outcome_ttl = settings.outcome_ttl_seconds
    # Beats get their own client: RQ raises the worker pool's socket_timeout to 415 s (for BLPOP),
    # and a beat stuck that long on a dead link keeps a returning worker looking dead.
    beats = Redis.from_url(settings.redis_url, socket_timeout=2 * settings.heartbeat_seconds,
                           socket_connect_timeout=2 * settings.heartbeat_seconds)
    worker.liveness = Heartbeat(beats, name, queues, Timings.of(settings), failed)
    # Queues and heartbeat follow the resident pipelines; the metrics port opens once one is.
    attach(worker, worker.liveness, residency, lambda: start_metrics_server(
        settings.metrics_port, metrics.registry, settings.metrics_host))
    worker.liveness.start()
    # Admin commands (load, unload, reload the catalog) and idle unloading: workers.control.
    controls = ControlThread(
        Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5), name,
        residency, lambda: load_catalog(settings.models_file), settings.idle_unload_seconds)
    controls.start()
    worker.max_batch_images = settings.max_batch_images
    worker.batch_work_images = settings.batch_work_images
    worker.max_batch_wait = settings.max_batch_wait_ms / 1000
    worker.push_exc_handler(metrics.job_failed)
    log.info("worker %s serving %s with %d torch thread(s)", name, queues, settings.threads,
             extra={"worker": name})
    try:
        worker.work(logging_level="WARNING")
    finally:
        controls.stop()
        worker.liveness.stop()
