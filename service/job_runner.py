"""The loop in every gateway that runs background jobs through the synchronous serving code.

Each pass claims pending jobs (a lease in Redis, renewed while the job runs) up to this
gateway's limits: `background_max_live` live jobs and `background_max_batch` batch-priority
jobs outstanding.  A job runs exactly as its synchronous request would (ImageService), with a
fixed render id: if this gateway dies, its leases lapse, another runner re-claims the job, and
the dispatcher finds the render already queued or done and waits for it instead of rendering
again (service.dispatch.Dispatcher.run).  A refusal that waiting cures (the owner's concurrency
cap, a full queue, no worker yet) puts the job back for later instead of failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from core.errors import OpenAIError, server_error
from core.rules import Operation
from core.settings import GatewaySettings
from service.background import BackgroundJobs
from service.dispatch import RequestContext
from service.job_store import FINAL, GENERATIONS, VARIATIONS, JobRecord
from service.serving import ImageService

log = logging.getLogger("easel.gateway")
# Refusals that mean "not now": the job waits and is tried again after Retry-After.
WAIT_CODES = ("concurrency_limit_exceeded", "queue_full", "service_unavailable")
EventSender = Callable[[str, dict[str, Any]], Awaitable[None]]


class JobRunner:
    def __init__(self, jobs: BackgroundJobs, images: ImageService, settings: GatewaySettings,
                 send_event: EventSender | None = None) -> None:
        self.jobs = jobs
        self.images = images
        self.settings = settings
        self.send_event = send_event
        self.limits = {"live": settings.background_max_live,
                       "batch": settings.background_max_batch}
        self._held: dict[str, tuple[str, asyncio.Task[None]]] = {}  # id -> (priority, task)
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._claim_forever()),
                       asyncio.create_task(self._renew_forever())]

    async def stop(self) -> None:
        """Stop claiming and drop held jobs: their leases lapse, and another runner (or this
        gateway once restarted) picks them up where they were."""
        tasks = self._loops + [task for _, task in self._held.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def held(self, priority: str) -> int:
        return sum(1 for p, _ in self._held.values() if p == priority)

    async def _claim_forever(self) -> None:
        store, wake = self.jobs.store, self.jobs.submitted
        while True:
            try:
                await self.jobs.recover()
                for priority in ("live", "batch"):
                    while self.held(priority) < self.limits[priority]:
                        job_id = await store.claim(priority)
                        if job_id is None:
                            break
                        task = asyncio.create_task(self._run(job_id))
                        self._held[job_id] = (priority, task)
                        task.add_done_callback(self._forget(job_id))
            except (RedisError, OSError) as exc:  # Redis away: the next pass tries again
                log.debug("background claim pass failed: %s", exc)
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.settings.background_poll_seconds)

    def _forget(self, job_id: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._held.pop(job_id, None)

        return forget

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.jobs.store.lease_ms / 3000)
            try:
                await self.jobs.store.renew(list(self._held))
            except (RedisError, OSError) as exc:  # leases renew on the next pass
                log.debug("background lease renewal failed: %s", exc)

    async def _run(self, job_id: str) -> None:
        store = self.jobs.store
        record = await store.load(job_id)
        if record is None or record.status in FINAL:
            await store.release(job_id)
            return
        running = replace(record, status="in_progress")
        if not await store.transition(running, ("queued", "in_progress")):
            await store.release(job_id)
            return
        ctx = RequestContext(request_id=record.id, key_name=record.owner, background=True,
                             priority=record.priority, fixed_job_id=record.render_id,
                             wait_seconds=float(self.settings.background_ttl_seconds))
        try:
            status, body = 200, await self._call(running, ctx)
        except OpenAIError as exc:
            if exc.status in (429, 503) and exc.code in WAIT_CODES:
                await self._later(running, exc)
                return
            status, body = exc.status, exc.envelope()
        except Exception:  # the synchronous route would answer 500 too
            log.exception("background job %s failed", job_id)
            error = server_error("The server had an error processing your request.")
            status, body = error.status, error.envelope()
        try:
            if await self.jobs.finish(running, status, body):
                log.info("background job %s %s (%d)", job_id,
                         "completed" if status == 200 else "failed", status,
                         extra={"job_id": job_id, "status": status})
                await self._announce(running, status)
        finally:
            await store.release(job_id)

    async def _later(self, record: JobRecord, refusal: OpenAIError) -> None:
        seconds = float(refusal.headers.get("Retry-After", "2"))
        waiting = replace(record, status="queued")
        await self.jobs.store.transition(waiting, ("in_progress",))
        await self.jobs.store.requeue(waiting, await self.jobs.store.now_ms()
                                      + int(seconds * 1000))

    async def _call(self, record: JobRecord, ctx: RequestContext) -> dict[str, Any]:
        images, base = self.images, record.base_url or self.settings.public_url
        if record.endpoint == GENERATIONS:
            result = await images.generate(record.request, base, ctx)
        elif record.multipart:
            upload = await self.jobs.load_upload(record.request)
            kind: Operation = "variation" if record.endpoint == VARIATIONS else "edit"
            result = await images.transform(kind, upload, base, ctx)
        else:
            result = await images.edit_json(record.request, base, ctx)
        if not isinstance(result, dict):  # a stream: refused before admission (serving.py)
            raise server_error("A background job cannot stream.")
        return result

    async def _announce(self, record: JobRecord, status: int) -> None:
        """Webhooks for single background jobs; a batch's lines are reported by its batch."""
        if self.send_event is None or record.batch_id is not None:
            return
        kind = "image.job.completed" if status == 200 else "image.job.failed"
        try:
            await self.send_event(kind, {"id": record.id})
        except (RedisError, OSError) as exc:
            log.warning("webhook %s for %s not queued: %s", kind, record.id, exc)
