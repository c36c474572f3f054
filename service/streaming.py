"""`stream: true`: server-sent events with partial images, then the completed image.

Event names and payloads follow OpenAI's (`image_generation.*` / `image_edit.*`, a `type` field
in every JSON payload, 0-based `partial_image_index`).  Previews arrive from the worker as storage
keys on the job's pub/sub channel; errors found before the stream starts are ordinary JSON
responses, and a failure mid-stream is one `data: {"error": ...}` event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from core.errors import OpenAIError, server_error, storage_unavailable
from core.jobs import Outcome, partial_channel
from core.storage import StorageError


@dataclass
class StreamReport:
    """How one stream went, filled in as it runs: its metrics and log line are made from it."""

    model: str
    started: float = field(default_factory=time.perf_counter)
    first_partial: float | None = None  # seconds from `started` to the first partial image
    seconds: float | None = None  # from `started` to the last event
    images: int = 0
    outcome: str = "abandoned"  # completed | error | abandoned (the client hung up)
    error: OpenAIError | None = None


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class PartialFeed:
    """A subscription to one job's preview channel, opened before the job is enqueued."""

    def __init__(self, redis: Any, job_id: str) -> None:
        self.pubsub = redis.pubsub()
        self.channel = partial_channel(job_id)
        self.items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for message in self.pubsub.listen():
            if message.get("type") == "message":
                await self.items.put(json.loads(message["data"]))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self.pubsub.unsubscribe(self.channel)
            await self.pubsub.aclose()


async def stream_events(prefix: str, meta: dict[str, Any], feed: PartialFeed,
                        outcome: Awaitable[Outcome], read: Callable[[str], bytes],
                        usage: dict[str, Any],
                        on_abandon: Callable[[], Awaitable[None]] | None = None,
                        report: StreamReport | None = None,
                        on_end: Callable[[StreamReport], None] | None = None,
                        position: Callable[[], Awaitable[int | None]] | None = None,
                        status_every: float | None = None) -> AsyncIterator[bytes]:
    """Yield partial-image events until the job ends, then the completed (or error) event.

    A client that hangs up cancels this generator mid-wait (Starlette cancels the response's
    task group): the clean-up then runs shielded, so the outcome task, the pending read of the
    preview queue and the subscription all end here, and `on_abandon` can cancel the job.
    `report` records how it went; `on_end` gets it once the stream is over.  Every
    `status_every` seconds without news, and until the first preview, a comment line tells the
    job's place in its queue (`: queue_position=N`, or `: rendering` once a worker has it):
    SSE clients such as the OpenAI SDKs skip comments, the playground shows them, and proxies
    see a live connection."""
    report = report or StreamReport(model="")
    done = asyncio.ensure_future(outcome)
    item: asyncio.Future[dict[str, Any]] | None = None
    finished = False

    async def partial(entry: dict[str, Any]) -> bytes:
        try:
            blob = await run_in_threadpool(read, entry["key"])
        except StorageError:  # a preview is a courtesy: skip it, the result may still come
            return b""
        if report.first_partial is None:
            report.first_partial = time.perf_counter() - report.started
        return sse(f"{prefix}.partial_image", {
            "type": f"{prefix}.partial_image", "b64_json": base64.b64encode(blob).decode(),
            "partial_image_index": entry["index"], "created_at": int(time.time()), **meta})

    try:
        if position is not None and status_every:
            yield await _status(position)  # at once: a queued stream says so from the start
        while not done.done():
            if item is None:
                item = asyncio.ensure_future(feed.items.get())
            quiet = status_every if position and report.first_partial is None else None
            waiting: set[asyncio.Future[Any]] = {done, item}
            await asyncio.wait(waiting, timeout=quiet, return_when=asyncio.FIRST_COMPLETED)
            if item.done():
                entry, item = item.result(), None
                if event := await partial(entry):
                    yield event
            elif not done.done() and position is not None:
                yield await _status(position)
        if item is not None:
            item.cancel()
            item = None
        while not feed.items.empty():  # previews that arrived together with the outcome
            if event := await partial(feed.items.get_nowait()):
                yield event
        try:
            result = done.result()
        except OpenAIError as exc:
            finished = True
            report.outcome, report.error = "error", exc
            yield sse("error", exc.envelope())
            return
        finished = True
        if result.result is None:
            report.outcome, report.error = "error", server_error("Image generation failed.")
            yield sse("error", report.error.envelope())
            return
        for key in result.result.keys:
            try:
                blob = await run_in_threadpool(read, key)
            except StorageError:  # an error event ends the stream cleanly, never a cut-off
                report.outcome, report.error = "error", storage_unavailable(
                    "The generated image could not be read from storage; try again shortly.")
                yield sse("error", report.error.envelope())
                return
            yield sse(f"{prefix}.completed", {
                "type": f"{prefix}.completed", "b64_json": base64.b64encode(blob).decode(),
                "created_at": int(time.time()), "usage": usage, **meta})
            report.images += 1
        report.outcome = "completed"
    except Exception:  # e.g. a result that storage cannot read: the stream breaks off
        report.outcome = "error"
        report.error = report.error or server_error("The stream failed.")
        raise
    finally:
        report.seconds = time.perf_counter() - report.started
        if on_end is not None:
            with contextlib.suppress(Exception):
                on_end(report)
        with anyio.CancelScope(shield=True):
            await _end(done, item)
            if not finished and on_abandon is not None:
                with contextlib.suppress(Exception):
                    await on_abandon()
            await feed.close()


async def _status(position: Callable[[], Awaitable[int | None]]) -> bytes:
    try:
        ahead = await position()
    except Exception:  # Redis away for a moment: a plain keep-alive instead
        return b":\n\n"
    return b": rendering\n\n" if ahead is None else f": queue_position={ahead}\n\n".encode()


async def _end(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel and await: a task left pending when the stream ends is destroyed with a warning,
    and the outcome task's own clean-up (releasing the request's lease) must run."""
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
