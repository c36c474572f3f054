"""Worker series computed at scrape time: what the worker is doing now, and GPU memory.

`WorkState` is driven from around the real pipeline call (a cross-request batch on its own
thread included), not from the job function, which for a batched job only picks up images that
were drawn before it ran.  Busy seconds include a call still in progress, so utilisation
(`rate(easel_worker_busy_seconds_total)`) is right even for one ten-minute render, whatever the
scrape interval.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("easel.worker")


class WorkState(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}  # pipeline -> pipeline calls in progress
        self._since: dict[str, float] = {}  # pipeline -> start of its current busy period
        self._busy: dict[str, float] = {}  # pipeline -> seconds of finished busy periods
        self._jobs: dict[str, str] = {}  # job id -> pipeline, for jobs started here

    def add(self, pipeline: str) -> None:
        """Create a pipeline's series at 0 (dashboards show 0, not a gap)."""
        with self._lock:
            self._calls.setdefault(pipeline, 0)
            self._busy.setdefault(pipeline, 0.0)

    def begin(self, pipeline: str) -> None:
        with self._lock:
            if not self._calls.get(pipeline):
                self._since[pipeline] = time.monotonic()
            self._calls[pipeline] = self._calls.get(pipeline, 0) + 1
            self._busy.setdefault(pipeline, 0.0)

    def end(self, pipeline: str) -> None:
        with self._lock:
            self._calls[pipeline] = max(0, self._calls.get(pipeline, 0) - 1)
            if self._calls[pipeline] == 0 and pipeline in self._since:
                self._busy[pipeline] += time.monotonic() - self._since.pop(pipeline)

    def busy(self, pipeline: str) -> bool:
        with self._lock:
            return bool(self._calls.get(pipeline))

    def claim(self, pipeline: str, job_id: str) -> None:
        with self._lock:
            self._jobs[job_id] = pipeline

    def release(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def release_all(self) -> None:
        with self._lock:
            self._jobs.clear()

    def collect(self) -> Iterator[Metric]:
        busy = GaugeMetricFamily("easel_worker_busy", "1 while a pipeline call of this pipeline "
                                 "runs on this worker, else 0", labels=["pipeline"])
        seconds = CounterMetricFamily("easel_worker_busy_seconds", "Seconds this worker spent "
                                      "inside pipeline calls (a call in progress included)",
                                      labels=["pipeline"])
        running = GaugeMetricFamily("easel_jobs_running", "Jobs this worker has started and "
                                    "not yet finished or failed", labels=["pipeline"])
        now = time.monotonic()
        with self._lock:
            for pipeline in sorted(self._busy):
                active = self._calls.get(pipeline, 0) > 0
                busy.add_metric([pipeline], 1.0 if active else 0.0)
                total = self._busy[pipeline] + (now - self._since[pipeline] if active and
                                                pipeline in self._since else 0.0)
                seconds.add_metric([pipeline], total)
                running.add_metric([pipeline], sum(p == pipeline for p in self._jobs.values()))
        yield busy
        yield seconds
        yield running


class GpuMemory(Collector):
    """Memory of this worker's CUDA device, labelled with it; nothing at all on a CPU worker
    (a 0 would read as "an idle GPU")."""

    def __init__(self, device: str) -> None:
        self.device = device

    def collect(self) -> Iterator[Metric]:
        torch = sys.modules.get("torch")  # never import torch just for a metric
        if not self.device.startswith("cuda") or torch is None or not torch.cuda.is_available():
            return
        try:
            families = self._read(torch)
        except Exception as exc:  # a driver error must not fail the whole scrape
            log.warning("GPU memory unavailable: %s", exc)
            return
        yield from families

    def _read(self, torch: Any) -> list[Metric]:
        index = torch.device(self.device).index
        index = torch.cuda.current_device() if index is None else index
        label = [f"cuda:{index}"]
        reserved = GaugeMetricFamily("easel_gpu_memory_bytes", "GPU memory reserved by this "
                                     "worker's torch allocator", labels=["device"])
        reserved.add_metric(label, torch.cuda.memory_reserved(index))
        peak = GaugeMetricFamily("easel_gpu_memory_peak_bytes", "Most GPU memory this worker's "
                                 "torch allocator has reserved since it started",
                                 labels=["device"])
        peak.add_metric(label, torch.cuda.max_memory_reserved(index))
        total = GaugeMetricFamily("easel_gpu_memory_total_bytes", "The device's memory",
                                  labels=["device"])
        total.add_metric(label, torch.cuda.get_device_properties(index).total_memory)
        return [reserved, peak, total]
