"""The worker process's resident state: loaded pipelines, storage and settings.

RQ calls job functions by dotted path with JSON arguments only, so the pipelines a worker loaded
at start live here, set once by `workers.main` and read by `workers.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.settings import WorkerSettings
from core.storage import LocalStorage, S3Storage


@dataclass
class Runtime:
    settings: WorkerSettings
    pipelines: dict[str, Any]  # name -> models.loading.LoadedPipeline
    storage: LocalStorage | S3Storage
    metrics: Any = None  # workers.metrics.WorkerMetrics; None where no worker process runs
    residency: Any = None  # workers.residency.Residency: loads, unloads, idle sleep

    def pipeline(self, name: str) -> Any:
        """The resident pipeline for a job (an asleep one is loaded first), or None."""
        if self.residency is not None:
            return self.residency.wake(name)
        return self.pipelines.get(name)


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("no worker runtime: jobs run only inside `easel worker`")
    return _current
