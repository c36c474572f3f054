"""Worker metrics (prometheus-client), served on `EASEL_METRICS_PORT` for Prometheus to scrape.

Built by `workers.main` at run time into a private registry: importing this module does no work
and registers nothing, so tests can build as many as they like.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from core.telemetry import SECONDS_BUCKETS, build_labels, count_job, failure_reason
from workers.gauges import GpuMemory, WorkState

log = logging.getLogger("easel.worker")

# Per image: ~0.05 s for the embedded model on a GPU, minutes for SDXL-class on a CPU.
GENERATION_BUCKETS = SECONDS_BUCKETS
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 10, 16, 32)
WAIT_BUCKETS = SECONDS_BUCKETS
# finished; retried: an attempt failed and RQ runs the job again; failed: for good.
STATUSES = ("finished", "retried", "failed")


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is not None and when.tzinfo is None:  # RQ stores UTC; old versions return naive
        return when.replace(tzinfo=dt.UTC)
    return when


class WorkerMetrics:
    """One per worker process; label values are pipeline names (a handful, never ids)."""

    def __init__(self, registry: CollectorRegistry | None = None, device: str = "cpu") -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter("easel_jobs_total", "Job attempts on this worker by status: finished, "
                            "retried (failed, RQ runs it again), failed (for good)",
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
        self.loads = Counter("easel_pipeline_loads_total", "Pipeline loads on this worker after "
                             "its start (admin API, waking from idle unload)", ["pipeline"],
                             registry=r)
        self.resident = Gauge("easel_pipeline_resident_bytes", "Weights of the pipelines this "
                              "worker holds in memory (0: unloaded)", ["pipeline"], registry=r)
        # Busy, busy seconds and running jobs: around the real pipeline call (workers.gauges).
        self.work = WorkState()
        r.register(self.work)
        r.register(GpuMemory(device))  # only on a CUDA device: no GPU, no series
        self.storage_errors = Counter("easel_storage_errors_total", "Storage puts and gets "
                                      "that failed", ["op"], registry=r)
        Info("easel_build", "Easel's version on this process", registry=r).info(
            build_labels("worker"))
        self.info = Info("easel_worker", "How this worker runs: device, dtype, pipelines, "
                         "torch threads", registry=r)
        ProcessCollector(registry=r)  # RSS and CPU seconds: a leak or a stuck worker shows here
        PlatformCollector(registry=r)
        self._batched: set[str] = set()
        for op in ("put", "get"):
            self.storage_errors.labels(op)

    def storage_failed(self, op: str) -> None:
        """core.storage's `on_error` hook."""
        self.storage_errors.labels(op).inc()

    @contextlib.contextmanager
    def rendering(self, pipeline: str) -> Iterator[None]:
        """Around one real pipeline call: easel_worker_busy and its busy seconds."""
        self.work.begin(pipeline)
        try:
            yield
        finally:
            self.work.end(pipeline)

    def claimed(self, pipeline: str, job_id: str) -> None:
        """A job this worker has started (easel_jobs_running) until it finishes or fails."""
        self.work.claim(pipeline, job_id)

    def released_all(self) -> None:
        self.work.release_all()

    def pipelines_loaded(self, load_seconds: dict[str, float]) -> None:
        """Record load times and create every series, so dashboards show 0 rather than gaps."""
        for name, seconds in load_seconds.items():
            self.model_load.labels(name).set(seconds)
            self.work.add(name)
            self.images.labels(name)
            for histogram in (self.queue_wait, self.generation, self.step, self.batch):
                histogram.labels(name)
            for status in STATUSES:
                self.jobs.labels(name, status)

    def pipeline_loaded(self, name: str, seconds: float, weight_bytes: int) -> None:
        """A pipeline loaded at run time (admin API, or waking from idle)."""
        self.pipelines_loaded({name: seconds})
        self.loads.labels(name).inc()
        self.resident.labels(name).set(weight_bytes)

    def pipeline_unloaded(self, name: str) -> None:
        self.resident.labels(name).set(0)

    def job_started(self, pipeline: str, rq_job: Any | None) -> None:
        if rq_job is None:
            return
        self.claimed(pipeline, str(rq_job.id))
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
        self.work.release(job_id)

    def job_failed(self, job: Any, *exc_info: Any) -> bool:
        """An RQ exception handler (`worker.push_exc_handler`), run before RQ decides on a
        retry: counts the attempt as retried or failed, by reason, here and in Redis (the
        gateway exports the cluster's counts), and logs one line.

        Returns True so RQ goes on to its other handlers (retries, failed-job registry).
        """
        try:
            payload = (getattr(job, "args", None) or [{}])[0]
        except Exception:  # a job whose data cannot be decoded (refused)
            payload = {}
        payload = payload if isinstance(payload, dict) else {}
        pipeline = str(payload.get("pipeline", "unknown"))
        exc_type = exc_info[0] if exc_info else None
        reason = failure_reason(exc_type, str(exc_info[1]) if len(exc_info) > 1 else "")
        retries_left = getattr(job, "retries_left", None)
        status = "retried" if isinstance(retries_left, int) and retries_left > 0 else "failed"
        self._batched.discard(str(job.id))
        self.jobs.labels(pipeline, status).inc()
        self.work.release(str(job.id))
        if getattr(job, "connection", None) is not None:
            count_job(job.connection, status, reason)
        request_id = payload.get("request_id")
        log.info("job %s %s (request %s): %s", job.id, status, request_id,
                 exc_type.__name__ if exc_type else "error",
                 extra={"job_id": job.id, "request_id": request_id, "status": status,
                        "reason": reason, "model": payload.get("model"), "pipeline": pipeline})
        return True


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
