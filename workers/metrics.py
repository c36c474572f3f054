"""Worker metrics (prometheus-client), served on `EASEL_METRICS_PORT` for Prometheus to scrape.

Built by `workers.main` at run time into a private registry: importing this module does no work
and registers nothing, so tests can build as many as they like.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

log = logging.getLogger("easel.worker")

# Seconds per image: ~0.05 s for the embedded model on a GPU, minutes for SDXL-class on a CPU.
GENERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 10, 16, 32)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STATUSES = ("finished", "failed")


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is not None and when.tzinfo is None:  # RQ stores UTC; old versions return naive
        return when.replace(tzinfo=dt.UTC)
    return when


class WorkerMetrics:
    """One per worker process; label values are pipeline names (a handful, never ids)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter("easel_jobs_total", "Render jobs by final status on this worker",
                            ["pipeline", "status"], registry=r)
        self.generation = Histogram("easel_generation_seconds",
                                    "Render time per image (a batch's time divided by its size)",
                                    ["pipeline"], buckets=GENERATION_BUCKETS, registry=r)
        self.step = Histogram("easel_step_seconds", "Time per denoising step of a batch",
                              ["pipeline"], buckets=STEP_BUCKETS, registry=r)
        self.batch = Histogram("easel_batch_size", "Images per pipeline call", ["pipeline"],
                               buckets=BATCH_BUCKETS, registry=r)
        self.images = Counter("easel_worker_images_total", "Images rendered and stored",
                              ["pipeline"], registry=r)
        self.queue_wait = Histogram("easel_queue_wait_seconds",
                                    "Time from enqueue to a worker starting the job",
                                    ["pipeline"], buckets=WAIT_BUCKETS, registry=r)
        self.model_load = Gauge("easel_model_load_seconds", "Time this worker took to load a "
                                "pipeline at start", ["pipeline"], registry=r)
        self.busy = Gauge("easel_worker_busy", "1 while this worker renders a job, else 0",
                          ["pipeline"], registry=r)
        self.gpu_memory = Gauge("easel_gpu_memory_bytes",
                                "GPU memory reserved by this worker's torch allocator",
                                registry=r)
        ProcessCollector(registry=r)  # RSS and CPU seconds: a leak or a stuck worker shows here
        self._batched: set[str] = set()

    def pipelines_loaded(self, load_seconds: dict[str, float]) -> None:
        """Record load times and create every series, so dashboards show 0 rather than gaps."""
        for name, seconds in load_seconds.items():
            self.model_load.labels(name).set(seconds)
            self.busy.labels(name).set(0)
            self.images.labels(name)
            for status in STATUSES:
                self.jobs.labels(name, status)
        self.update_gpu_memory()

    def job_started(self, pipeline: str, rq_job: Any | None) -> None:
        self.busy.labels(pipeline).set(1)
        if rq_job is None:
            return
        enqueued = _aware(getattr(rq_job, "enqueued_at", None))
        started = _aware(getattr(rq_job, "started_at", None)) or dt.datetime.now(dt.UTC)
        if enqueued is not None:
            wait = (started - enqueued).total_seconds()
            self.queue_wait.labels(pipeline).observe(max(0.0, wait))

    def rendered(self, pipeline: str, images: int, steps: int, seconds: float,
                 job_ids: tuple[str, ...] = ()) -> None:
        """One pipeline call: its size, time per image and per step.

        A cross-request batch (workers.batching) reports here once, naming its jobs, so that
        their `job_finished` does not count the call again with the near-zero time it took
        them to pick up their parked images.
        """
        self._batched.update(job_ids)
        self.batch.labels(pipeline).observe(images)
        for _ in range(images):  # one observation per image: the histogram counts images
            self.generation.labels(pipeline).observe(seconds / images)
        if steps > 0:
            self.step.labels(pipeline).observe(seconds / steps)

    def job_finished(self, pipeline: str, job_id: str, images: int, steps: int,
                     render_seconds: float) -> None:
        if job_id in self._batched:
            self._batched.discard(job_id)
        else:
            self.rendered(pipeline, images, steps, render_seconds)
        self.jobs.labels(pipeline, "finished").inc()
        self.images.labels(pipeline).inc(images)
        self.busy.labels(pipeline).set(0)
        self.update_gpu_memory()

    def job_failed(self, job: Any, *exc_info: Any) -> bool:
        """An RQ exception handler (`worker.push_exc_handler`): counts the failure, logs one line.

        Returns True so RQ goes on to its other handlers (retries, failed-job registry).
        """
        payload = (getattr(job, "args", None) or [{}])[0]
        payload = payload if isinstance(payload, dict) else {}
        pipeline = str(payload.get("pipeline", "unknown"))
        self._batched.discard(str(job.id))
        self.jobs.labels(pipeline, "failed").inc()
        self.busy.labels(pipeline).set(0)
        request_id = payload.get("request_id")
        log.info("job %s failed (request %s): %s", job.id, request_id,
                 exc_info[0].__name__ if exc_info and exc_info[0] else "error",
                 extra={"job_id": job.id, "request_id": request_id, "status": "failed"})
        return True

    def update_gpu_memory(self) -> None:
        torch = sys.modules.get("torch")  # never import torch just for a metric
        if torch is not None and torch.cuda.is_available():
            self.gpu_memory.set(torch.cuda.memory_reserved())


def start_metrics_server(port: int, registry: CollectorRegistry, addr: str = "127.0.0.1") -> Any:
    """Serve `/metrics` on `addr`: loopback unless EASEL_METRICS_HOST opens it to Prometheus on
    another host or container (the page shows job counts and timings, nothing for strangers).

    Returns the HTTP server, or None when disabled (port 0) or the port is taken: rendering
    matters more than its metrics, so that logs an error instead of killing the worker, and the
    container healthcheck, which polls this port, reports the problem.
    """
    if port <= 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        log.error("worker metrics: cannot listen on %s:%d (%s); set EASEL_METRICS_PORT", addr,
                  port, exc)
        return None
    log.info("worker metrics on http://%s:%d/metrics", addr, port)
    return server
