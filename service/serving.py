"""The serving logic behind the image routes: validate, enqueue, wait, answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from core.catalog import Catalog
from core.errors import bad_request, server_error, unavailable
from core.jobs import Outcome, RenderJob, input_key, new_job_id
from core.settings import GatewaySettings
from core.storage import LocalStorage, S3Storage, StorageError
from service.limits import KeyQuota, ServiceRate, rate_limited
from service.metrics import GatewayMetrics
from service.queue import JobQueue
from service.streaming import PartialFeed, stream_events
from service.uploads import Uploaded, decode, has_alpha, has_transparent_pixels, to_png
from service.validation import GenerationParams, coerce_form, parse_generation, parse_request
from service.waiter import CompletionWaiter


class ClientGone(Exception):
    """The client disconnected while waiting; nothing is sent back."""


@dataclass
class RequestContext:
    request_id: str | None = None
    key_name: str | None = None
    disconnected: Callable[[], Awaitable[None]] | None = None
    model: str = ""  # filled in once the body names one; labels the request metrics


class ImageService:
    def __init__(self, settings: GatewaySettings, catalog: Catalog, queue: JobQueue,
                 waiter: CompletionWaiter, storage: LocalStorage | S3Storage,
                 metrics: GatewayMetrics, quota: KeyQuota | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.queue = queue
        self.waiter = waiter
        self.storage = storage
        self.metrics = metrics
        self._workers_seen: dict[str, float] = {}
        self.rate = ServiceRate()
        self.quota = quota

    async def _require_worker(self, queue_name: str, model: str) -> None:
        """Fail fast instead of queueing work no process will ever take (cached for 2 s)."""
        if time.monotonic() - self._workers_seen.get(queue_name, -1e9) < 2.0:
            return
        if await run_in_threadpool(self.queue.live_workers, queue_name) == 0:
            raise unavailable(f"No worker is serving model '{model}' right now; try again soon.",
                              retry_after=10)
        self._workers_seen[queue_name] = time.monotonic()

    async def admit(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> None:
        """Everything that can refuse a job, then the enqueue; errors are plain JSON answers."""
        try:
            await self._require_worker(queue_name, job.model)
            depth = await run_in_threadpool(self.queue.depth, queue_name)
            if depth >= self.settings.max_queue_depth:
                raise rate_limited(f"The queue for model '{job.model}' is full ({depth} jobs); "
                                   "try again later.", self.rate.retry_after(job.pipeline, depth),
                                   "queue_full")
            if self.quota is not None and ctx.key_name:
                await self.quota.acquire(ctx.key_name)
        except RedisError as exc:
            raise unavailable("The job queue is unavailable; try again shortly.") from exc
        try:
            await run_in_threadpool(self.queue.enqueue, queue_name, job)
        except RedisError as exc:
            await self._release(ctx)
            raise unavailable("The job queue is unavailable; try again shortly.") from exc

    async def _release(self, ctx: RequestContext) -> None:
        if self.quota is not None and ctx.key_name:
            with contextlib.suppress(RedisError):
                await self.quota.release(ctx.key_name)

    async def outcome_of(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> Outcome:
        """Wait for an admitted job; a failure becomes an OpenAIError, a hang-up ClientGone."""
        self.metrics.waiting.inc()
        waiting = asyncio.ensure_future(
            self.waiter.wait(job.job_id, self.settings.request_timeout_seconds))
        gone = asyncio.ensure_future(ctx.disconnected()) if ctx.disconnected else None
        try:
            await asyncio.wait([f for f in (waiting, gone) if f is not None],
                               return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                if self.settings.on_disconnect == "cancel":
                    await run_in_threadpool(self.queue.cancel_if_queued, queue_name, job.job_id)
                raise ClientGone()
            outcome = waiting.result()
        finally:
            for f in (waiting, gone):
                if f is not None and not f.done():
                    f.cancel()
            self.metrics.waiting.dec()
            await self._release(ctx)
        if outcome is None:
            raise server_error("The image was not ready in time; try again later.",
                               "timeout", 504)
        if outcome.status == "failed" or outcome.result is None:
            raise server_error(f"Image generation failed: {outcome.error or 'unknown error'}",
                               outcome.error_type or "generation_failed")
        self.rate.record(job.pipeline)  # completions only: timeouts say nothing about the rate
        return outcome

    async def run_job(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> Outcome:
        await self.admit(queue_name, job, ctx)
        return await self.outcome_of(queue_name, job, ctx)

    async def run_streaming(self, params: GenerationParams, job: RenderJob,
                            ctx: RequestContext) -> StreamingResponse:
        feed = PartialFeed(self.waiter.redis, job.job_id)
        await feed.open()  # before the enqueue, so no preview can be missed
        try:
            await self.admit(params.pipeline.queue, job, ctx)
        except BaseException:
            await feed.close()
            raise
        # Starlette cancels the stream when the client hangs up: no disconnect watcher here.
        quiet = RequestContext(ctx.request_id, ctx.key_name, None)
        events = stream_events("image_edit" if params.kind == "edit" else "image_generation",
                               self._meta(params), feed,
                               self.outcome_of(params.pipeline.queue, job, quiet),
                               self.storage.get, self._usage(params))
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @staticmethod
    def _meta(params: GenerationParams) -> dict[str, Any]:
        quality = "medium" if params.quality in ("auto", "standard") else params.quality
        return {"background": params.background, "output_format": params.output_format,
                "quality": quality, "size": f"{params.width}x{params.height}"}

    @staticmethod
    def _usage(params: GenerationParams, input_images: int = 0) -> dict[str, Any]:
        """What Easel can count honestly (docs/api.md): prompt words as text tokens, and one
        output token per image per denoising step; input images are not tokenised (0)."""
        text = len(params.prompt.split())
        out = params.n * params.steps
        return {"input_tokens": text, "input_tokens_details": {"text_tokens": text,
                                                               "image_tokens": 0},
                "output_tokens": out, "output_tokens_details": {"image_tokens": out,
                                                                "text_tokens": 0},
                "total_tokens": text + out}

    @staticmethod
    def _job(params: GenerationParams, job_id: str, request_id: str | None = None,
             **inputs: Any) -> RenderJob:
        return RenderJob(
            job_id=job_id, kind=params.kind, model=params.model.id,  # type: ignore[arg-type]
            pipeline=params.pipeline.name, prompt=params.prompt,
            negative_prompt=params.negative_prompt, width=params.width, height=params.height,
            n=params.n, seeds=params.seeds, steps=params.steps, guidance=params.guidance,
            output_format=params.output_format,  # type: ignore[arg-type]
            output_compression=params.output_compression, strength=params.strength,
            background=params.background,  # type: ignore[arg-type]
            partial_images=params.partial_images if params.stream else 0,
            request_id=request_id, **inputs)

    async def generate(self, body: Any, base_url: str,
                       ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        params = parse_generation(body, self.catalog)
        ctx.model = params.model.id
        job = self._job(params, new_job_id(), ctx.request_id)
        if params.stream:
            return await self.run_streaming(params, job, ctx)
        outcome = await self.run_job(params.pipeline.queue, job, ctx)
        return await self.respond(params, outcome, base_url)

    async def transform(self, kind: str, upload: Uploaded, base_url: str,
                        ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        """Edits (inpainting, outpainting) and variations: inputs go to storage, not Redis."""
        body = coerce_form(upload.fields)
        limit = self.settings.max_image_pixels
        images = [await run_in_threadpool(decode, data, "image", limit) for data in upload.images]
        first = images[0]
        mask = None
        if upload.mask is not None:
            mask = await run_in_threadpool(decode, upload.mask, "mask", limit)
            if not has_alpha(mask):
                raise bad_request("Invalid 'mask': it must be a PNG with an alpha channel; "
                                  "fully transparent pixels mark the area to edit.", "mask",
                                  "invalid_mask")
            if mask.size != first.size:
                raise bad_request(f"Invalid 'mask': its size {mask.size[0]}x{mask.size[1]} "
                                  f"does not match the image's {first.size[0]}x"
                                  f"{first.size[1]}.", "mask", "invalid_mask")
        params = parse_request(body, self.catalog, kind, first.size)
        ctx.model = params.model.id
        if (kind == "edit" and mask is None and params.model.family.name == "dall-e-2"
                and not await run_in_threadpool(has_transparent_pixels, first)):
            raise bad_request("Invalid 'image': without a mask the image must have transparent "
                              "pixels, which mark the area to edit.", "image", "invalid_image")
        job_id = new_job_id()
        keys = [input_key(job_id, f"image{i}") for i in range(len(images) if kind == "edit" else 1)]
        try:
            for key, image in zip(keys, images, strict=False):
                await run_in_threadpool(self.storage.put, key, to_png(image), "image/png")
            mask_key = None
            if mask is not None:
                mask_key = input_key(job_id, "mask")
                await run_in_threadpool(self.storage.put, mask_key, to_png(mask), "image/png")
        except StorageError as exc:
            raise server_error("Storage is unavailable; try again shortly.",
                               "storage_unavailable", 503) from exc
        job = self._job(params, job_id, ctx.request_id, image_keys=keys, mask_key=mask_key)
        if params.stream:
            return await self.run_streaming(params, job, ctx)
        outcome = await self.run_job(params.pipeline.queue, job, ctx)
        return await self.respond(params, outcome, base_url)

    async def respond(self, params: GenerationParams, outcome: Outcome,
                      base_url: str) -> dict[str, Any]:
        assert outcome.result is not None
        base = self.settings.public_url or base_url
        data: list[dict[str, Any]] = []
        try:
            if params.response_format == "b64_json":
                blobs = await asyncio.gather(*(run_in_threadpool(self.storage.get, key)
                                               for key in outcome.result.keys))
                data = [{"b64_json": base64.b64encode(b).decode("ascii"), "revised_prompt": None}
                        for b in blobs]
            else:
                data = [{"url": self.storage.url(key, base), "revised_prompt": None}
                        for key in outcome.result.keys]
        except StorageError as exc:
            raise server_error("The generated image could not be read from storage.",
                               "storage_unavailable", 503) from exc
        for item, seed in zip(data, outcome.result.seeds, strict=True):
            item["seed"] = seed  # Easel extension: reproduce an image with extra_body={"seed":..}
        self.metrics.images.labels(params.model.id).inc(len(data))
        response: dict[str, Any] = {"created": int(time.time()), "data": data}
        if params.model.family.gpt_fields:
            response.update(self._meta(params), usage=self._usage(params))
        return response

