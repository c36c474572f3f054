"""Gateway metrics (prometheus-client), kept in a registry owned by one app instance.

Besides its own requests, the gateway exports what Redis knows about the whole cluster (queue
depth, live workers, job retries and failures by reason, reaped jobs, worker starts), so one
scrape of any gateway shows it; with several gateways, aggregate those with `max`, not `sum`.

Several gateway processes on one port (cli/serve.py) are one gateway to a scraper: they run
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by their supervisor), so
whichever answers the scrape reports every process's requests, summed (requests waiting: the
live processes' sum).  The per-process `process_*` metrics are left out there: they would
describe only the process that happened to answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.catalog import Catalog
from core.reaping import REAPED_KEY
from core.telemetry import SECONDS_BUCKETS, build_labels, read_counters
from service.queue import workers_per_pipeline

log = logging.getLogger("easel.gateway")
LATENCY_BUCKETS = SECONDS_BUCKETS
# Probes and scrapes: polled constantly, and a 503 from /readyz while workers start is expected.
QUIET_ENDPOINTS = ("/healthz", "/readyz", "/metrics")


class QueueCollector(Collector):
    """Queues, workers and the cluster's job counters, read from Redis at scrape time."""

    def __init__(self, queue: Any, catalog: Catalog, expected: dict[str, int] | None = None,
                 ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.expected = expected or {}

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("easel_queue_depth", "Jobs waiting in the queue",
                                  labels=["pipeline"])
        workers = GaugeMetricFamily("easel_workers_alive", "Workers with a live heartbeat",
                                    labels=["pipeline"])
        redis_up = GaugeMetricFamily("easel_redis_up", "1 when this scrape could read Redis")
        retried = CounterMetricFamily("easel_job_retries", "Job attempts that failed and were "
                                      "queued again, by reason (all workers and reapers)",
                                      labels=["reason"])
        failed = CounterMetricFamily("easel_job_failures", "Jobs that failed for good, by "
                                     "reason (all workers and reapers)", labels=["reason"])
        reaped = CounterMetricFamily("easel_jobs_reaped", "Started jobs found abandoned by a "
                                     "dead worker (re-run or failed)")
        starts = CounterMetricFamily("easel_worker_starts", "Worker process starts, by "
                                     "configured worker name", labels=["worker"])
        try:
            alive = workers_per_pipeline(self.queue.fleet(), self.catalog)
            for spec in self.catalog.pipelines.values():
                depth.add_metric([spec.name], self.queue.depth(spec.queue))
                workers.add_metric([spec.name], alive[spec.name])
            counts, started, reaped_jobs = read_counters(self.queue.redis, REAPED_KEY)
            for reason, n in sorted(counts["retried"].items()):
                retried.add_metric([reason], n)
            for reason, n in sorted(counts["failed"].items()):
                failed.add_metric([reason], n)
            for worker, n in sorted(started.items()):
                starts.add_metric([worker], n)
            reaped.add_metric([], reaped_jobs)
            redis_up.add_metric([], 1)
        except Exception as exc:  # Redis away: a scrape must still succeed, and say so
            log.debug("queue metrics unavailable: %s", exc)
            redis_up.add_metric([], 0)
        yield from (depth, workers, redis_up, retried, failed, reaped, starts)


class BuildInfo(Collector):
    """easel_build_info, as prometheus_client's Info writes it (Info has no multiprocess mode)."""

    def __init__(self) -> None:
        self.labels = build_labels("gateway")

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("easel_build", "Easel's version on this process", self.labels)


def shared_values() -> bool:
    """Whether metric values live in PROMETHEUS_MULTIPROC_DIR, shared by the gateway processes
    on one port (prometheus_client decides this once, when it is imported)."""
    return values.ValueClass is not values.MutexValue


class GatewayMetrics:
    """`registry` holds the metrics; `exposition` is what /metrics serves: the same registry,
    or with several processes the sums over all of them plus what is read at scrape time."""

    def __init__(self, queue: Any, catalog: Catalog, expected: dict[str, int] | None = None,
                 max_queue_depth: int = 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.exposition = r
        scraped: list[Collector] = [QueueCollector(queue, catalog, expected), BuildInfo(),
                                    PlatformCollector(registry=None)]
        if shared_values():
            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposition)
        else:
            ProcessCollector(registry=r)  # the gateway's own CPU, memory and open files
        self.requests = Counter("easel_requests_total", "HTTP requests, by route, model and "
                                "status", ["endpoint", "model", "status"], registry=r)
        self.latency = Histogram("easel_request_seconds", "HTTP request latency, to the last "
                                 "byte (streams: their last event)", ["endpoint", "model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("easel_errors_total", "Error answers by OpenAI error type and code "
                              "(probes excluded; a stream's error event included)",
                              ["type", "code", "endpoint"], registry=r)
        self.images = Counter("easel_images_total", "Images delivered (streams included)",
                              ["model"], registry=r)
        self.waiting = Gauge("easel_requests_waiting", "Requests waiting for a job outcome",
                             registry=r, multiprocess_mode="livesum")
        self.streams = Counter("easel_streams_total", "Streamed answers by how they ended: "
                               "completed, error, abandoned", ["model", "outcome"], registry=r)
        self.first_partial = Histogram("easel_stream_first_partial_seconds", "Stream start to "
                                       "its first partial image", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.stream_seconds = Histogram("easel_stream_seconds", "Stream start to its last event",
                                        ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.storage_errors = Counter("easel_storage_errors_total", "Storage puts and gets "
                                      "that failed", ["op"], registry=r)
        expected_workers = Gauge("easel_workers_expected", "Live workers each pipeline should "
                                 "have (EASEL_EXPECTED_WORKERS)", ["pipeline"], registry=r,
                                 multiprocess_mode="max")
        queue_limit = Gauge("easel_queue_limit", "Queue depth beyond which new jobs get 429 "
                            "(EASEL_MAX_QUEUE_DEPTH)", ["pipeline"], registry=r,
                            multiprocess_mode="max")
        models = Gauge("easel_model_info", "The catalog: each public model id and the pipeline "
                       "that serves it", ["model", "pipeline"], registry=r,
                       multiprocess_mode="max")
        for name, count in (expected or {}).items():
            expected_workers.labels(name).set(count)
        for spec in catalog.pipelines.values():
            if max_queue_depth:
                queue_limit.labels(spec.name).set(max_queue_depth)
        for model in catalog.models.values():  # every model's counters from 0, not a gap
            models.labels(model.id, model.pipeline).set(1)
            self.images.labels(model.id)
            for outcome in ("completed", "error", "abandoned"):
                self.streams.labels(model.id, outcome)
        for op in ("put", "get"):
            self.storage_errors.labels(op)
        for collector in scraped:
            self.add_collector(collector)

    def add_collector(self, collector: Collector) -> None:
        """A collector read at scrape time (from Redis, say): served as it is, never summed."""
        self.registry.register(collector)
        if self.exposition is not self.registry:
            self.exposition.register(collector)

    def storage_failed(self, op: str) -> None:
        """core.storage's `on_error` hook."""
        self.storage_errors.labels(op).inc()

    def error(self, endpoint: str, type_: str, code: str | None) -> None:
        if endpoint not in QUIET_ENDPOINTS:
            self.errors.labels(type_, code or "", endpoint).inc()

