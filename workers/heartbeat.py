"""A daemon thread that keeps this worker's started jobs alive in RQ and reaps dead workers'.

It runs beside the main thread, which spends its time inside torch (which releases the GIL), so
a worker busy with a long batch still heartbeats; a killed worker stops, and its entries expire
after `EXPIRY_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from core import liveness
from core.reaping import EXPIRY_SECONDS, HEARTBEAT_SECONDS, reap

log = logging.getLogger("easel.worker")


class Heartbeat:
    def __init__(self, redis: Any, name: str, queue_names: list[str],
                 reap_every: float = 5.0) -> None:
        self.redis = redis
        self.name = name
        self.queue_names = queue_names
        self.reap_every = reap_every
        self._entries: list[tuple[str, str]] = []  # (registry key, execution composite key)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="easel-heartbeat", daemon=True)

    def hold(self, entries: list[tuple[str, str]]) -> None:
        with self._lock:
            self._entries = list(entries)
        self._beat()  # shorten RQ's long default expiry right away

    def release(self) -> None:
        with self._lock:
            self._entries = []

    def start(self) -> None:
        liveness.beat(self.redis, self.name, self.queue_names)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            liveness.forget(self.redis, self.name)  # a clean exit leaves readiness at once
        except Exception as exc:
            log.debug("could not deregister: %s", exc)

    def _beat(self) -> None:
        with self._lock:
            entries = list(self._entries)
        liveness.beat(self.redis, self.name, self.queue_names, {"busy": bool(entries)})
        if not entries:
            return
        expiry = time.time() + EXPIRY_SECONDS
        with self.redis.pipeline() as pipe:
            for registry_key, member in entries:
                pipe.zadd(registry_key, {member: expiry}, xx=True)  # only while still started
            pipe.execute()

    def _run(self) -> None:
        last_reap = 0.0
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
                if time.monotonic() - last_reap >= self.reap_every:
                    last_reap = time.monotonic()
                    reap(self.redis, self.queue_names)
            except Exception as exc:  # Redis away: keep trying; RQ reconnects the main loop
                log.warning("heartbeat failed: %s", exc)
