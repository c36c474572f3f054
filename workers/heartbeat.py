"""A daemon thread that keeps this worker's started jobs alive in RQ and reaps dead workers'.

It runs beside the main thread, which spends its time inside torch (which releases the GIL), so
a worker busy with a long batch still heartbeats; a killed worker stops, and its entries expire
one liveness TTL later, when any process's reaper hands them back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core import liveness
from core.reaping import reap

log = logging.getLogger("easel.worker")


@dataclass(frozen=True)
class Timings:
    """The recovery timings of core.settings.CommonSettings, in seconds."""

    heartbeat: float = 2.0
    liveness_ttl: float = 10.0
    reaper: float = 2.0
    outcome_ttl: int = 3600

    @classmethod
    def of(cls, settings: Any) -> Timings:
        return cls(settings.heartbeat_seconds, settings.liveness_ttl_seconds,
                   settings.reaper_seconds, settings.outcome_ttl_seconds)


class Heartbeat:
    def __init__(self, redis: Any, name: str, queue_names: list[str],
                 timings: Timings | None = None, failed: dict[str, str] | None = None) -> None:
        self.redis = redis
        self.name = name
        self.queue_names = queue_names
        self.failed = dict(failed or {})  # pipelines that failed to load -> why (readiness)
        # More of the beat's payload: resident pipelines and the ones unloaded on purpose
        # (workers.control.follow), for /readyz, /v1/models and the admin API.
        self.report: Callable[[], dict[str, Any]] = dict
        self.timings = timings or Timings()
        self._entries: list[tuple[str, str]] = []  # (registry key, execution composite key)
        self._rendering = 0  # images inside a pipeline call right now
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="easel-heartbeat", daemon=True)

    def hold(self, entries: list[tuple[str, str]]) -> None:
        with self._lock:
            self._entries = list(entries)
        self._beat_now()  # shorten RQ's long default expiry right away

    def release(self) -> None:
        with self._lock:
            self._entries = []
        self._beat_now()  # say "not busy" now, not one heartbeat later

    @contextlib.contextmanager
    def rendering(self, images: int) -> Iterator[None]:
        """Mark a pipeline call in progress (the beat reports it: readiness, tests, metrics)."""
        with self._lock:
            self._rendering += images
        try:
            self._beat_now()
            yield
        finally:
            with self._lock:
                self._rendering -= images

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            liveness.forget(self.redis, self.name)  # a clean exit leaves readiness at once
        except Exception as exc:
            log.debug("could not deregister: %s", exc)

    def beat_soon(self) -> None:
        """Announce a change (pipelines loaded or unloaded) now, not one heartbeat later."""
        self._beat_now()

    def _beat_now(self) -> None:
        """A beat from the job's own thread: Redis being away must not fail the job (the
        heartbeat thread keeps trying, and RQ reconnects the main loop)."""
        try:
            self._beat()
        except Exception as exc:
            log.warning("heartbeat failed: %s", exc)

    def _beat(self) -> None:
        with self._lock:
            entries = list(self._entries)
            rendering = self._rendering
        liveness.beat(self.redis, self.name, self.queue_names, self.timings.liveness_ttl,
                      {"busy": bool(entries), "rendering": rendering, "failed": self.failed,
                       **self.report()})
        if not entries:
            return
        expiry = time.time() + self.timings.liveness_ttl
        with self.redis.pipeline() as pipe:
            for registry_key, member in entries:
                pipe.zadd(registry_key, {member: expiry}, xx=True)  # only while still started
            pipe.execute()

    def _run(self) -> None:
        last_reap = 0.0
        while not self._stop.wait(self.timings.heartbeat):
            try:
                self._beat()
                if time.monotonic() - last_reap >= self.timings.reaper:
                    last_reap = time.monotonic()
                    reap(self.redis, self.queue_names, self.timings.outcome_ttl,
                         self.timings.liveness_ttl)
            except Exception as exc:  # Redis away: keep trying; RQ reconnects the main loop
                log.warning("heartbeat failed: %s", exc)
