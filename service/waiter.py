"""Wait for job outcomes without sleep-polling: one pub/sub subscription serves every waiter.

Workers publish each finished job's id on `DONE_CHANNEL` after writing its outcome key.  A waiter
reads the key once (the job may already be done), then sleeps on a future that the listener
resolves.  Pub/sub drops messages while the connection is down, so each waiter re-reads its key
every `recheck_seconds` as a safety net; that is one GET per waiter every few seconds, not a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from core.jobs import DONE_CHANNEL, Outcome, outcome_key
from service.subscription import follow_channel

log = logging.getLogger("easel.gateway")


class CompletionWaiter:
    def __init__(self, redis: Any, recheck_seconds: float = 5.0) -> None:
        self.redis = redis
        self.recheck_seconds = recheck_seconds
        self._futures: dict[str, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._futures.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        async def catch_up() -> None:
            self._wake_all()  # messages may have been lost while we were away

        await follow_channel(
            self.redis, DONE_CHANNEL, catch_up,
            lambda data: self._wake(data.decode() if isinstance(data, bytes) else str(data)),
            lambda exc: log.warning("pub/sub connection lost (%s); reconnecting", exc))

    def _wake(self, job_id: str) -> None:
        for fut in self._futures.get(job_id, ()):
            if not fut.done():
                fut.set_result(None)

    def _wake_all(self) -> None:
        for job_id in list(self._futures):
            self._wake(job_id)

    def expect(self, job_id: str) -> asyncio.Future[None]:
        """Listen for a job before it is enqueued: then no announcement can come before the
        listening, and `wait(..., first=)` needs no read to start (one round trip less)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(job_id, set()).add(fut)
        return fut

    def forget(self, job_id: str, fut: asyncio.Future[None]) -> None:
        waiters = self._futures.get(job_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._futures[job_id]

    async def _read(self, job_id: str) -> Outcome | None:
        raw = await self.redis.get(outcome_key(job_id))
        return Outcome.model_validate_json(raw) if raw else None

    async def wait(self, job_id: str, timeout: float,
                   first: asyncio.Future[None] | None = None) -> Outcome | None:
        """The job's outcome, or None when `timeout` seconds pass first.  `first`: the
        future `expect` gave before the job was enqueued (its outcome cannot be there yet)."""
        deadline = time.monotonic() + timeout
        while True:
            fut, unread = (first, True) if first is not None else (self.expect(job_id), False)
            first = None
            try:
                try:
                    outcome = None if unread else await self._read(job_id)
                except (RedisError, OSError):
                    outcome = None  # Redis away: keep waiting, the job survives a restart (AOF)
                if outcome is not None:
                    return outcome
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(fut, min(self.recheck_seconds, remaining))
            finally:
                self.forget(job_id, fut)
