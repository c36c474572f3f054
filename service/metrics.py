"""Gateway metrics (prometheus-client), kept in a registry owned by one app instance."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.catalog import Catalog

log = logging.getLogger("easel.gateway")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class QueueCollector(Collector):
    """Queue depth and live workers per pipeline, read from Redis at scrape time."""

    def __init__(self, queue: Any, catalog: Catalog) -> None:
        self.queue = queue
        self.catalog = catalog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("easel_queue_depth", "Jobs waiting in the queue",
                                  labels=["pipeline"])
        workers = GaugeMetricFamily("easel_workers_alive", "Workers with a live heartbeat",
                                    labels=["pipeline"])
        try:
            alive = self.queue.workers_per_pipeline(self.catalog)
            for spec in self.catalog.pipelines.values():
                depth.add_metric([spec.name], self.queue.depth(spec.queue))
                workers.add_metric([spec.name], alive[spec.name])
        except Exception as exc:  # Redis away: a scrape must still succeed
            log.debug("queue metrics unavailable: %s", exc)
        yield depth
        yield workers


class GatewayMetrics:
    def __init__(self, queue: Any, catalog: Catalog) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("easel_requests_total", "HTTP requests",
                                ["endpoint", "model", "status"], registry=self.registry)
        self.latency = Histogram("easel_request_seconds", "HTTP request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("easel_errors_total", "Errors answered, by OpenAI error type",
                              ["type"], registry=self.registry)
        self.images = Counter("easel_images_total", "Images delivered", ["model"],
                              registry=self.registry)
        self.waiting = Gauge("easel_requests_waiting", "Requests waiting for a job outcome",
                             registry=self.registry)
        self.registry.register(QueueCollector(queue, catalog))
