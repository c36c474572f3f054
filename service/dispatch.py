"""Admit a job, enqueue it and wait for its outcome: the part of serving every endpoint shares.

Admission (queue cap, per-key rate and concurrency) is one atomic Redis decision that hands out
leases (service.limits.Admission); the lease lives exactly as long as the request waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from core.errors import adapter_unavailable, server_error, storage_unavailable, unavailable
from core.jobs import Outcome, RenderJob, batch_queue
from core.settings import GatewaySettings
from service.limits import Admission, Lease, ServiceRate
from service.metrics import GatewayMetrics
from service.moderation import refuse
from service.queue import JobQueue
from service.waiter import CompletionWaiter

log = logging.getLogger("easel.gateway")


class ClientGone(Exception):
    """The client disconnected while waiting; nothing is sent back."""


@dataclass
class RequestContext:
    request_id: str | None = None
    key_name: str | None = None
    disconnected: Callable[[], Awaitable[None]] | None = None
    model: str = ""  # filled in once the body names one; labels the request metrics
    user: str | None = None  # the request's `user` field, logged with it (abuse tracing)
    # Work that only an admitted job deserves, run between admission and the enqueue (edits
    # decode and store their uploads here, so a refused request never costs a decode).
    before_enqueue: Callable[[], Awaitable[None]] | None = None
    # For the request's log line and metrics (service.observe): its job, the images it
    # delivered, and how a `stream: true` answer went (service.streaming.StreamReport).
    job_id: str | None = None
    images: int = 0
    stream: Any = None
    # Background jobs (service.background): the render job's id (fixed, so a job re-claimed
    # after its gateway died finds the render it already queued), how long to wait for it, and
    # its priority: "batch" goes to the pipeline's batch queue and never holds the owner's live
    # concurrency slots; neither counts against the per-minute rate (the submit did).
    background: bool = False
    priority: str = "live"
    fixed_job_id: str | None = None
    wait_seconds: float | None = None


class Dispatcher:
    def __init__(self, settings: GatewaySettings, queue: JobQueue, waiter: CompletionWaiter,
                 metrics: GatewayMetrics, admission: Admission, processes: int = 1) -> None:
        self.settings = settings
        self.queue = queue
        self.waiter = waiter
        self.metrics = metrics
        self.admission = admission
        # One of `processes` sharing a port sees its share of the completions.
        self.rate = ServiceRate(share=processes)
        self._workers_seen: dict[str, float] = {}
        # Per queue: adapters no live worker could load -> why (read with the worker check).
        self._broken_adapters: dict[str, dict[str, str]] = {}
        self._checking: dict[str, asyncio.Lock] = {}

    def _worker_seen(self, queue_name: str) -> bool:
        seen = self._workers_seen.get(queue_name)
        return seen is not None and time.monotonic() - seen < self.settings.worker_check_seconds

    async def _require_worker(self, queue_name: str, model: str) -> None:
        """Fail fast instead of queueing work no process will ever take (a live worker is
        trusted for worker_check_seconds; one request asks Redis, the others wait for it)."""
        if self._worker_seen(queue_name):
            return
        async with self._checking.setdefault(queue_name, asyncio.Lock()):
            if not self._worker_seen(queue_name):
                await self._check_worker(queue_name, model)

    async def _check_worker(self, queue_name: str, model: str) -> None:
        pipeline = queue_name.removeprefix("easel:")
        fleet = await run_in_threadpool(self.queue.fleet)
        workers, broken = fleet.serving(queue_name, pipeline)
        if workers == 0:
            failures = {**fleet.load_failures(), **fleet.unloaded()}
            if pipeline in failures:  # waiting will not fix this: say what will
                raise unavailable(f"Model '{model}' is unavailable: {failures[pipeline]}",
                                  retry_after=60)
            raise unavailable(f"No worker is serving model '{model}' right now; try again soon.",
                              retry_after=10)
        self._broken_adapters[queue_name] = broken
        self._workers_seen[queue_name] = time.monotonic()

    def _refuse_broken_adapters(self, queue_name: str, job: RenderJob) -> None:
        """A job naming an adapter that no worker of its pipeline could load would only fail
        there: refuse it now, with the workers' reason."""
        broken = self._broken_adapters.get(queue_name) or {}
        for lora in job.loras:
            if lora.name in broken:
                raise adapter_unavailable(f"The adapter '{lora.name}' in 'loras' is "
                                          f"unavailable: {broken[lora.name]}")

    async def _already_queued(self, job_id: str) -> bool:
        try:
            return await run_in_threadpool(self.queue.exists, job_id)
        except RedisError as exc:
            raise unavailable("The job queue is unavailable; try again shortly.") from exc

    async def admit(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> Lease:
        """Everything that can refuse a job, then the enqueue; errors are plain JSON answers.
        The caller must `release` the lease it gets (`outcome_of` does)."""
        ctx.job_id = job.job_id
        target = batch_queue(queue_name) if ctx.priority == "batch" else queue_name
        # With nothing to do between admission and enqueue, both are one round trip.
        together = ctx.before_enqueue is None
        try:
            await self._require_worker(queue_name, job.model)
            self._refuse_broken_adapters(queue_name, job)
            if together and not self.queue.knows_server_version:
                await run_in_threadpool(self.queue.learn_server_version)
            lease = await self.admission.acquire(
                self.queue.queue(target).key,
                ctx.key_name if ctx.priority == "live" else None, job.job_id, job.model,
                lambda depth: self.rate.retry_after(job.pipeline, depth),
                count_rate=not ctx.background,
                enqueue=self.queue.enqueue_commands(target, job) if together else None)
        except RedisError as exc:
            log.warning("admission failed: Redis: %s", exc)  # the client sees 503, not why
            raise unavailable("The job queue is unavailable; try again shortly.") from exc
        if together:
            return lease
        try:
            if ctx.before_enqueue is not None:
                await ctx.before_enqueue()
            await run_in_threadpool(self.queue.enqueue, target, job)
            await self.admission.enqueued(lease)
        except RedisError as exc:
            await self.release(lease)
            raise unavailable("The job queue is unavailable; try again shortly.") from exc
        except BaseException:  # a refused upload (400), storage down, a client gone
            await self.release(lease)
            raise
        return lease

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(RedisError, OSError):  # unreleased leases expire on their own
            await self.admission.release(lease)

    async def abandon(self, queue_name: str, job_id: str) -> None:
        """The client is gone: take its job off the queue if configured and not started."""
        if self.settings.on_disconnect == "cancel":
            with contextlib.suppress(RedisError, OSError):
                await run_in_threadpool(self.queue.cancel_if_queued, queue_name, job_id)

    async def outcome_of(self, queue_name: str, job: RenderJob, ctx: RequestContext,
                         lease: Lease | None, expected: asyncio.Future[None] | None = None,
                         ) -> Outcome:
        """Wait for an admitted job; a failure becomes an OpenAIError, a hang-up ClientGone.
        `expected`: the waiter's future from before the enqueue (CompletionWaiter.expect)."""
        self.metrics.waiting.inc()
        timeout = ctx.wait_seconds or self.settings.request_timeout_seconds
        waiting = asyncio.ensure_future(self.waiter.wait(job.job_id, timeout, expected))
        gone = asyncio.ensure_future(ctx.disconnected()) if ctx.disconnected else None
        try:
            await asyncio.wait([f for f in (waiting, gone) if f is not None],
                               return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                await self.abandon(queue_name, job.job_id)
                raise ClientGone()
            outcome = waiting.result()
        finally:
            for f in (waiting, gone):
                if f is not None and not f.done():
                    f.cancel()
            self.metrics.waiting.dec()
            if expected is not None:  # a wait cancelled before it ran never removed it
                self.waiter.forget(job.job_id, expected)
            if lease is not None:
                await self.release(lease)
        if outcome is None:
            raise server_error("The image was not ready in time; try again later.",
                               "timeout", 504)
        if outcome.error_type == "storage_unavailable":
            raise storage_unavailable(f"Image generation failed: {outcome.error}")
        if outcome.error_type == "adapter_unavailable":  # the gateway had not heard yet
            raise adapter_unavailable(f"An adapter in 'loras' is unavailable: {outcome.error}")
        if outcome.status == "failed" or outcome.result is None:
            raise server_error(f"Image generation failed: {outcome.error or 'unknown error'}",
                               outcome.error_type or "generation_failed")
        self.rate.record(job.pipeline)  # completions only: timeouts say nothing about the rate
        if outcome.result.safety_violations:  # the worker's output classifier withheld them
            raise refuse(outcome.result.safety_violations, "output", self.metrics.registry)
        ctx.images = len(outcome.result.keys)
        return outcome

    async def run(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> Outcome:
        if ctx.background and await self._already_queued(job.job_id):
            # A re-claimed background job whose render is queued, running or done: wait for
            # that render instead of queueing (and rendering) it a second time.
            ctx.job_id = job.job_id
            return await self.outcome_of(queue_name, job, ctx, None)
        # A new job id: listen before the enqueue, so the wait needs no first read.
        expected = self.waiter.expect(job.job_id) if ctx.fixed_job_id is None else None
        try:
            lease = await self.admit(queue_name, job, ctx)
        except BaseException:
            if expected is not None:
                self.waiter.forget(job.job_id, expected)
            raise
        return await self.outcome_of(queue_name, job, ctx, lease, expected)
