"""Which pipelines this worker holds in memory, and the changes the admin API and idle time make.

Three states besides resident (docs/models.md, model management):
- *asleep*: unloaded after `EASEL_IDLE_UNLOAD_SECONDS` without a job; its queue is still served,
  and the next job loads it again first (it pays the load time);
- *unloaded*: dropped by the admin API; its queue is no longer served until loaded again;
- *failed*: its last load failed (the message goes to readiness and the API's 503).

Loads run on the control thread (workers.control) while the main thread renders other
pipelines; an unload waits for the pipeline's lock, so it never pulls weights from under a call.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from core.catalog import Catalog, PipelineSpec
from workers.loading import load_with_retries

log = logging.getLogger("easel.worker")


class Residency:
    def __init__(self, catalog: Catalog, load: Callable[[PipelineSpec, Catalog], Any],
                 pipelines: dict[str, Any], failed: dict[str, str], metrics: Any = None,
                 backoff: float = 1.0) -> None:
        self.catalog = catalog
        self._load = load
        self.pipelines = pipelines  # the runtime's dict: name -> LoadedPipeline (shared)
        self.failed = failed  # the heartbeat's dict: name -> why its last load failed
        self.asleep: set[str] = set()
        self.unloaded: set[str] = set()
        self.last_used: dict[str, float] = dict.fromkeys(pipelines, time.monotonic())
        # Weight bytes per resident pipeline, counted once per load (every beat reports them).
        self.sizes = {name: loaded.weight_bytes() for name, loaded in pipelines.items()}
        self.metrics = metrics
        self.backoff = backoff
        self.on_change: Callable[[], None] = lambda: None  # worker queues + heartbeat follow
        self._guard = threading.RLock()  # one load or unload at a time

    def served(self) -> list[str]:
        """Pipelines whose queues this worker takes jobs from (asleep ones included)."""
        return [*self.pipelines, *sorted(self.asleep - set(self.pipelines))]

    def used(self, name: str) -> None:
        self.last_used[name] = time.monotonic()

    def load(self, name: str) -> dict[str, Any]:
        """Load catalog pipeline `name` (a no-op when resident); raises with the reason."""
        with self._guard:
            spec = self.catalog.pipelines.get(name)
            if spec is None:
                raise KeyError(f"unknown pipeline {name!r}; the catalog has: "
                               f"{', '.join(self.catalog.pipelines)}")
            if name not in self.pipelines:
                try:
                    loaded = load_with_retries(lambda s: self._load(s, self.catalog), spec,
                                               backoff=self.backoff)
                except Exception as exc:
                    reason = str(exc).strip() or type(exc).__name__
                    self.failed[name] = f"pipeline {name} failed to load: {reason}"
                    self.on_change()
                    raise RuntimeError(self.failed[name]) from exc
                self.pipelines[name] = loaded
                self.sizes[name] = loaded.weight_bytes()
                self.failed.pop(name, None)
                if self.metrics is not None:
                    self.metrics.pipeline_loaded(name, loaded.load_seconds, self.sizes[name])
            self.asleep.discard(name)
            self.unloaded.discard(name)
            self.used(name)
            self.on_change()
            return self.describe()[name]

    def unload(self, name: str, *, keep_queue: bool = False) -> None:
        """Drop `name`'s weights once its current call ends. keep_queue: asleep (idle unload),
        else unloaded (its queue is left to other workers)."""
        with self._guard:
            loaded = self.pipelines.get(name)
            if loaded is None and name not in self.asleep:
                raise KeyError(f"this worker does not hold pipeline {name!r}")
            if loaded is not None:
                with loaded.lock:  # waits for a render in progress
                    del self.pipelines[name]
            (self.asleep.add if keep_queue else self.unloaded.add)(name)
            if not keep_queue:
                self.asleep.discard(name)
            del loaded
            gc.collect()
            _free_device_cache()
            if self.metrics is not None:
                self.metrics.pipeline_unloaded(name)
            self.on_change()
            log.info("pipeline %s %s", name, "asleep (idle)" if keep_queue else "unloaded",
                     extra={"pipeline": name})

    def wake(self, name: str) -> Any:
        """The resident pipeline for a job, loading an asleep one first."""
        loaded = self.pipelines.get(name)
        if loaded is None and name in self.asleep:
            log.info("pipeline %s asleep: loading it for a job", name, extra={"pipeline": name})
            self.load(name)
            loaded = self.pipelines.get(name)
        if loaded is not None:
            self.used(name)
        return loaded

    def sleep_idle(self, after_seconds: float) -> list[str]:
        """Put pipelines no job used for `after_seconds` to sleep (never one mid-call)."""
        if after_seconds <= 0:
            return []
        now, slept = time.monotonic(), []
        for name, loaded in list(self.pipelines.items()):
            if now - self.last_used.get(name, now) < after_seconds:
                continue
            if not loaded.lock.acquire(blocking=False):
                continue  # rendering right now: not idle
            loaded.lock.release()
            self.unload(name, keep_queue=True)
            slept.append(name)
        return slept

    def reload_catalog(self, catalog: Catalog) -> None:
        """A new catalog: later loads use its specs; resident pipelines get its adapters."""
        with self._guard:
            self.catalog = catalog
            for name, loaded in self.pipelines.items():
                if loaded.adapters is not None:
                    loaded.adapters.respec(catalog.adapters_of(name))
            self.on_change()

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per pipeline this worker knows of: state, load time, memory, idle time, adapters
        (resident ones, and those that failed to load -> why: readiness and the gateway's
        refusal of requests naming them read it from the heartbeat, core.liveness)."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for name, loaded in self.pipelines.items():
            cache = loaded.adapters
            out[name] = {"state": "resident", "load_seconds": round(loaded.load_seconds, 3),
                         "bytes": self.sizes.get(name, 0),
                         "idle_seconds": round(now - self.last_used.get(name, now), 1),
                         "adapters": list(cache.resident) if cache is not None else [],
                         "failed_adapters": dict(cache.failed) if cache is not None else {}}
        for name in self.asleep - set(self.pipelines):
            out[name] = {"state": "asleep"}
        for name in self.unloaded:
            out[name] = {"state": "unloaded"}
        for name in set(self.failed) - set(out):
            out[name] = {"state": "failed", "error": self.failed[name]}
        return out


def _free_device_cache() -> None:
    """Give freed GPU memory back to the driver (a CPU worker has nothing to do)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
