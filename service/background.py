"""Background jobs: an image request accepted now and rendered later (`Prefer: respond-async`,
and every line of a batch).  This is the API other code calls; `service.job_runner` runs them.

Callers learn that a job finished by polling `get` (cheap: one hash read) or by listening on
`service.job_store.DONE_CHANNEL`, which carries the id of every job that reached a final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from core.errors import storage_unavailable
from core.jobs import Outcome, input_key, new_job_id, publish_outcome
from core.storage import LocalStorage, S3Storage, StorageError
from service.job_store import (
    ENDPOINTS,
    FINAL,
    PRIORITIES,
    JobRecord,
    JobStore,
    check_job_id,
)
from service.job_store import new_job_id as new_background_id
from service.queue import JobQueue
from service.uploads import Uploaded

__all__ = ["BackgroundJobs", "JobRecord"]


class BackgroundJobs:
    def __init__(self, store: JobStore, queue: JobQueue, storage: LocalStorage | S3Storage,
                 outcome_ttl: int) -> None:
        self.store = store
        self.queue = queue
        self.storage = storage
        self.outcome_ttl = outcome_ttl
        self.submitted = asyncio.Event()  # wakes this gateway's runner at once

    async def submit(self, *, owner: str | None, endpoint: str, body: dict[str, Any],
                     priority: str = "live", batch_id: str | None = None,
                     job_id: str | None = None, base_url: str = "",
                     multipart: bool = False) -> JobRecord:
        """Queue a request for a runner.  The body is not validated here (the HTTP route and
        the Batch API validate before submitting).  A `job_id` that already exists returns
        that job, so a caller that retries with its own ids never queues a request twice."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"background jobs serve {ENDPOINTS}, not {endpoint!r}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        record = JobRecord(id=check_job_id(job_id) if job_id else new_background_id(),
                           owner=owner, endpoint=endpoint, status="queued", priority=priority,
                           batch_id=batch_id, created_at=int(time.time()), request=body,
                           multipart=multipart, base_url=base_url)
        record = await self.store.create(record)
        self.submitted.set()
        return record

    async def get(self, job_id: str) -> JobRecord | None:
        """The job as stored; a held job whose render still waits in its RQ queue reads
        `queued` (a worker has not started it), `in_progress` once a worker has."""
        record = await self.store.load(job_id)
        if record is None or record.status != "in_progress":
            return record
        rq_status = await self.store.redis.hget(f"rq:job:{record.render_id}", "status")
        if rq_status in (None, b"queued", b"scheduled", b"deferred"):
            return replace(record, status="queued")
        return record

    async def queue_position(self, record: JobRecord) -> int | None:
        """Jobs ahead of this one: in the runners' pending queue while no runner holds it, then
        in its pipeline's RQ queue (exact); None once a worker renders it."""
        if record.status != "queued":
            return None
        rank = await self.store.rank(record)
        if rank is not None:
            return rank
        origin = await run_in_threadpool(self.queue.origin, record.render_id)
        if origin is None:
            return 0  # held by a runner that is admitting it: next in line
        return await run_in_threadpool(self.queue.position, origin, record.render_id)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job that no worker has started; returns the job as it now is (a job that
        is rendering or already finished comes back unchanged: check its status)."""
        record = await self.store.load(job_id)
        if record is None or record.status in FINAL:
            return record
        cancelled = replace(record, status="cancelled", finished_at=int(time.time()),
                            request={})
        if await self.store.unqueue(record):  # no runner held it
            allowed: tuple[str, ...] = ("queued",)
        elif await run_in_threadpool(self._unqueue_render, record.render_id):
            allowed = ("queued", "in_progress")
        else:
            return await self.get(job_id)
        done = await self.store.transition(cancelled, allowed)
        if allowed != ("queued",):  # cancelled first, then its runner is woken: it finds so
            await run_in_threadpool(self._wake, record.render_id)
        if not done:
            return await self.get(job_id)
        await self._finished(record)
        return cancelled

    def _unqueue_render(self, render_id: str) -> bool:
        """Take the render off its RQ queue if no worker has started it."""
        origin = self.queue.origin(render_id)
        return origin is not None and self.queue.cancel_if_queued(origin, render_id)

    def _wake(self, render_id: str) -> None:
        """The runner waiting for a cancelled render gets a failed outcome and stops waiting."""
        publish_outcome(self.queue.redis, Outcome(job_id=render_id, status="failed",
                                                  error="cancelled", error_type="cancelled"),
                        self.outcome_ttl)

    async def finish(self, record: JobRecord, status_code: int, body: dict[str, Any]) -> bool:
        """Record a job's answer, unless it was cancelled or finished meanwhile."""
        # The request is dropped once answered: a JSON edit's may be megabytes of data: URLs.
        done = replace(record, status="completed" if status_code == 200 else "failed",
                       finished_at=int(time.time()), status_code=status_code, body=body,
                       request={})
        if not await self.store.transition(done, ("queued", "in_progress")):
            return False
        await self._finished(record)
        return True

    async def _finished(self, record: JobRecord) -> None:
        """Announce the job (its id) and delete what only its run needed."""
        await self.store.announce(record.id)
        if record.multipart:  # the uploads were only kept for this job
            keys = [*record.request.get("images", []), record.request.get("mask")]
            for key in filter(None, keys):
                with contextlib.suppress(StorageError, OSError):
                    await run_in_threadpool(self.storage.delete, key)

    async def store_upload(self, upload: Uploaded) -> dict[str, Any]:
        """Keep a multipart request's files in storage, under a private id that no URL shows
        (`inputs/...` is never served), until its job has run."""
        private_id = new_job_id()
        images = [input_key(private_id, f"upload{i}", "bin") for i in range(len(upload.images))]
        mask = input_key(private_id, "upload-mask", "bin") if upload.mask is not None else None
        parts = list(zip(images, upload.images, strict=True))
        if mask is not None and upload.mask is not None:
            parts.append((mask, upload.mask))
        try:
            for key, data in parts:
                await run_in_threadpool(self.storage.put, key, data, "application/octet-stream")
        except StorageError as exc:
            raise storage_unavailable("Storage is unavailable; try again shortly.") from exc
        return {"fields": upload.fields, "images": images, "mask": mask}

    async def load_upload(self, request: dict[str, Any]) -> Uploaded:
        images = [await run_in_threadpool(self.storage.get, key) for key in request["images"]]
        mask = (await run_in_threadpool(self.storage.get, request["mask"])
                if request.get("mask") else None)
        return Uploaded(dict(request.get("fields") or {}), images, mask)

    async def recover(self) -> int:
        try:
            return await self.store.recover()
        except (RedisError, OSError):
            return 0
