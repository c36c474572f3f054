"""The worker's control thread: admin commands from Redis (core.control) and idle unloading.

It blocks on the worker's control list for at most `poll` seconds at a time, so idle pipelines
are put to sleep within that much of their deadline.  After every change the RQ worker's queues
and the heartbeat follow the pipelines it now serves (`follow`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from core import control
from core.catalog import Catalog, CatalogError
from core.jobs import batch_queue
from workers.residency import Residency

log = logging.getLogger("easel.worker")


def follow(worker: Any, heartbeat: Any, residency: Residency) -> None:
    """Point the RQ worker and the heartbeat at the queues of the pipelines now served.

    RQ re-reads `_ordered_queues` at every dequeue, and EaselWorker blocks at most a second at a
    time, so a loaded pipeline is served within about a second; a worker serving nothing
    listens on its private idle queue (RQ needs one)."""
    live = [residency.catalog.pipelines[n].queue for n in residency.served()
            if n in residency.catalog.pipelines]
    names = live + [batch_queue(q) for q in live]  # as workers.main orders them
    queues = [worker.queue_class(q, connection=worker.connection, serializer=worker.serializer,
                                 job_class=worker.job_class)
              for q in names or [control.idle_queue(worker.name)]]
    worker.queues = queues
    worker._ordered_queues = queues[:]
    heartbeat.queue_names = names
    heartbeat.failed = residency.failed
    heartbeat.report = lambda: {"pipelines": residency.describe(),
                                "unloaded": sorted(residency.unloaded)}
    heartbeat.beat_soon()


def attach(worker: Any, heartbeat: Any, residency: Residency,
           on_serving: Callable[[], object]) -> None:
    """From now on the RQ worker and the heartbeat `follow` every change of `residency`, and
    `on_serving` runs once, when it first holds a pipeline: at once, or at the first admin load
    on a worker whose every pipeline failed at start (it opens the metrics port that the
    container healthcheck polls, so "healthy" means "serving")."""
    pending = [on_serving]

    def changed() -> None:
        follow(worker, heartbeat, residency)
        if residency.pipelines and pending:
            pending.pop()()

    residency.on_change = changed
    changed()


class ControlThread(threading.Thread):
    def __init__(self, redis: Any, worker_name: str, residency: Residency,
                 read_catalog: Callable[[], Catalog], idle_unload_seconds: float,
                 poll: float = 1.0) -> None:
        super().__init__(name="easel-control", daemon=True)
        self.redis = redis
        self.key = control.control_key(worker_name)
        self.residency = residency
        self.read_catalog = read_catalog
        self.idle_unload_seconds = idle_unload_seconds
        self.poll = poll
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.redis.blpop([self.key], timeout=max(1, int(self.poll)))
                if got is not None:
                    self.handle(control.Command.model_validate_json(got[1]))
                self.residency.sleep_idle(self.idle_unload_seconds)
            except Exception as exc:  # Redis away, a bad command: keep serving, try again
                log.warning("control: %s", exc)
                self._stop.wait(self.poll)

    def handle(self, command: control.Command) -> None:
        log.info("control: %s %s", command.op, command.pipeline or "",
                 extra={"pipeline": command.pipeline})
        try:
            if command.op == "load":
                self.residency.load(command.pipeline or "")
            elif command.op == "unload":
                self.residency.unload(command.pipeline or "")
            else:
                self.residency.reload_catalog(self.read_catalog())
            reply = control.Reply(ok=True, pipelines=self.residency.describe())
        except (KeyError, RuntimeError, CatalogError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            reply = control.Reply(ok=False, error=str(message),
                                  pipelines=self.residency.describe())
        control.answer(self.redis, command, reply)
