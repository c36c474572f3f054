"""The serving logic behind the image routes: validate, enqueue, wait, answer."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from core.catalog import Catalog
from core.errors import bad_request, storage_unavailable
from core.jobs import Outcome, RenderJob, input_key, new_job_id
from core.requests import ImageParams, ImageRef
from core.rules import QUALITY_REPORTED, Operation
from core.settings import GatewaySettings
from core.storage import LocalStorage, S3Storage, StorageError
from service.dispatch import Dispatcher, RequestContext
from service.fetch import load_image_url
from service.files import FileStore
from service.metrics import GatewayMetrics
from service.prompts import PromptGate
from service.streaming import PartialFeed, StreamReport, stream_events
from service.uploads import Uploaded, check_format, prepare, probe
from service.validation import parse_json_edit, parse_request


class ImageService:
    def __init__(self, settings: GatewaySettings, catalog: Catalog, dispatcher: Dispatcher,
                 storage: LocalStorage | S3Storage, metrics: GatewayMetrics,
                 files: FileStore | None = None) -> None:
        self.settings = settings
        self.files = files  # JSON edits' images by `file_id` (the Files API)
        self.catalog = catalog
        self.dispatcher = dispatcher
        self.storage = storage
        self.metrics = metrics
        self.decodes = asyncio.Semaphore(settings.max_concurrent_decodes)  # _store_inputs
        self.prompts = PromptGate(settings, metrics.registry)  # moderation, then rewriting

    async def run_job(self, queue_name: str, job: RenderJob, ctx: RequestContext) -> Outcome:
        return await self.dispatcher.run(queue_name, job, ctx)

    async def run_streaming(self, params: ImageParams, job: RenderJob,
                            ctx: RequestContext) -> StreamingResponse:
        if ctx.background:  # nobody is connected to stream to
            raise bad_request("A background job (Prefer: respond-async, or a batch) cannot "
                              "stream: leave 'stream' unset or false.", "stream",
                              "unsupported_parameter")
        ctx.stream = StreamReport(model=params.model.id)
        feed = PartialFeed(self.dispatcher.waiter.redis, job.job_id)
        await feed.open()  # before the enqueue, so no preview can be missed
        queue_name = params.pipeline.queue
        try:
            lease = await self.dispatcher.admit(queue_name, job, ctx)
        except BaseException:
            await feed.close()
            raise
        # Starlette cancels the stream when the client hangs up: no disconnect watcher here;
        # stream_events calls the abandon hook instead.
        quiet = RequestContext(ctx.request_id, ctx.key_name, None)
        events = stream_events("image_edit" if params.kind == "edit" else "image_generation",
                               self._meta(params), feed,
                               self.dispatcher.outcome_of(queue_name, job, quiet, lease),
                               self.storage.get, self._usage(params),
                               lambda: self.dispatcher.abandon(queue_name, job.job_id),
                               ctx.stream, self._stream_ended,
                               lambda: run_in_threadpool(self.dispatcher.queue.position,
                                                         queue_name, job.job_id),
                               self.settings.stream_status_seconds or None)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    def _known_model(self, body: Any) -> str:
        """The model a request names, if the catalog has it (a name it lacks never becomes a
        metric label)."""
        name = body.get("model") if isinstance(body, dict) else None
        return name if isinstance(name, str) and self.catalog.model(name) is not None else ""

    def _stream_ended(self, report: StreamReport) -> None:
        m = self.metrics
        m.streams.labels(report.model, report.outcome).inc()
        m.images.labels(report.model).inc(report.images)
        if report.first_partial is not None:
            m.first_partial.labels(report.model).observe(report.first_partial)
        if report.seconds is not None:
            m.stream_seconds.labels(report.model).observe(report.seconds)

    @staticmethod
    def _meta(params: ImageParams) -> dict[str, Any]:
        quality = QUALITY_REPORTED.get(params.quality, params.quality)
        return {"background": "transparent" if params.transparent else "opaque",
                "output_format": params.output_format, "quality": quality, "size": params.size}

    @staticmethod
    def _usage(params: ImageParams) -> dict[str, Any]:
        """What Easel can count honestly (docs/api.md): prompt words as text tokens, and one
        output token per image drawn per denoising step (reranked candidates included: they
        are rendered); input images are not tokenised (0)."""
        text = len(params.prompt.split())
        out = params.n * params.best_of * params.steps
        return {"input_tokens": text, "input_tokens_details": {"text_tokens": text,
                                                               "image_tokens": 0},
                "output_tokens": out, "output_tokens_details": {"image_tokens": out,
                                                                "text_tokens": 0},
                "total_tokens": text + out}

    async def generate(self, body: Any, base_url: str,
                       ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        ctx.model = self._known_model(body)  # labels the metrics of a refused request too
        params = parse_request(body, self.catalog, "generate")
        ctx.model, ctx.user = params.model.id, params.user
        params = await self.prompts.screen(params, body, ctx.key_name)
        job = params.to_job(ctx.fixed_job_id or new_job_id(), ctx.request_id)
        if params.stream:
            return await self.run_streaming(params, job, ctx)
        outcome = await self.run_job(params.pipeline.queue, job, ctx)
        return await self.respond(params, outcome, base_url)

    async def transform(self, kind: Operation, upload: Uploaded, base_url: str,
                        ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        """Multipart edits (inpainting, outpainting) and variations."""
        ctx.model = self._known_model(upload.fields)
        params = parse_request(upload.fields, self.catalog, kind, form=True)
        params = await self.prompts.screen(params, upload.fields, ctx.key_name)
        return await self._transform(params, upload, "image", base_url, ctx)

    async def edit_json(self, body: Any, base_url: str,
                        ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        """A JSON edit: images and mask by `data:` or `http(s)` URL (service/fetch.py)."""
        params, refs, mask_ref = parse_json_edit(body, self.catalog)
        params = await self.prompts.screen(params, body, ctx.key_name)
        self._check_count(params, len(refs), "images")
        # Only the images the pipeline uses are fetched (EASEL_EXTRA_IMAGES=first: docs/api.md).
        used = refs[:params.pipeline.images_used]
        owner = ctx.key_name or ""  # `file_id`s name the caller's own files only
        images = [await self._fetch(ref, f"images[{i}]", owner) for i, ref in enumerate(used)]
        mask = (await self._fetch(mask_ref, "mask", owner) if mask_ref is not None else None)
        return await self._transform(params, Uploaded({}, images, mask), "images", base_url,
                                     ctx)

    async def _fetch(self, ref: ImageRef, param: str, owner: str) -> bytes:
        if ref.file_id is not None and ref.image_url is not None:
            raise bad_request("Give either 'image_url' or 'file_id', not both.",
                              f"{param}.file_id", "invalid_value")
        if ref.file_id is not None and self.files is not None:
            # Only the caller's own files: another key's id is as unknown as a made-up one.
            return await self.files.read(owner, ref.file_id, f"{param}.file_id",
                                         self.settings.max_file_bytes)
        if ref.image_url is None:
            raise bad_request("You must provide 'image_url' or 'file_id'.",
                              f"{param}.image_url", "missing_required_parameter")
        s = self.settings
        return await load_image_url(ref.image_url, f"{param}.image_url", s.max_file_bytes,
                                    s.fetch_timeout_seconds, s.fetch_private_urls)

    def _check_count(self, params: ImageParams, count: int, param: str) -> None:
        """Never ignore an image silently: a pipeline draws from one image, or from up to its
        `reference_images`; more is refused unless the operator chose EASEL_EXTRA_IMAGES=first
        (then core.catalog.Catalog.rules_of allows up to the family's limit)."""
        most, mid = params.rules.max_images, params.model.id
        if count <= most:
            return
        if most and most < params.model.family.max_images:
            raise bad_request(f"Model '{mid}' is served by a pipeline that uses {most} "
                              f"image(s); got {count}. Send at most {most} (operators can set "
                              "EASEL_EXTRA_IMAGES=first to render from the first and ignore "
                              "the rest).", param, "too_many_images")
        raise bad_request(f"Model '{mid}' takes at most {most} image(s); got {count}.",
                          param, "too_many_images")

    async def _transform(self, params: ImageParams, upload: Uploaded, param: str, base_url: str,
                         ctx: RequestContext) -> dict[str, Any] | StreamingResponse:
        """Fields, model, image count and sizes (from the image headers) are checked before
        admission; only what the job uses (the first image, an edit's mask) is ever decoded."""
        ctx.model, ctx.user = params.model.id, params.user
        kind = params.kind
        self._check_count(params, len(upload.images), param)
        used = params.pipeline.images_used
        for extra in upload.images[used:]:  # EASEL_EXTRA_IMAGES=first: checked, never decoded
            check_format(extra, "image")
        if kind != "edit" and upload.mask is not None:
            raise bad_request("Variations take no 'mask'.", "mask", "unknown_parameter")
        limit = self.settings.max_image_pixels
        probed = [await run_in_threadpool(probe, data, "image", limit)
                  for data in upload.images[:used]]
        first = probed[0]
        mask = None
        if upload.mask is not None:
            mask = await run_in_threadpool(probe, upload.mask, "mask", limit)
            if not mask.alpha:
                raise bad_request("Invalid 'mask': it must be a PNG with an alpha channel; "
                                  "fully transparent pixels mark the area to edit.", "mask",
                                  "invalid_mask")
            if mask.size != first.size:
                raise bad_request(f"Invalid 'mask': its size {mask.size[0]}x{mask.size[1]} "
                                  f"does not match the image's {first.size[0]}x"
                                  f"{first.size[1]}.", "mask", "invalid_mask")
        pixels = sum(p.pixels for p in probed) + (mask.pixels if mask else 0)
        if pixels > self.settings.max_request_pixels:
            raise bad_request(f"Invalid 'image': the images and mask have {pixels} pixels, more "
                              f"than the {self.settings.max_request_pixels} one request may "
                              "have decoded.", "image", "image_too_large")
        transparent = kind == "edit" and mask is None and not params.rules.whole_image_edits
        if transparent and not first.alpha:
            raise bad_request("Invalid 'image': without a mask the image must have transparent "
                              "pixels, which mark the area to edit.", "image", "invalid_image")
        private_id = new_job_id()  # inputs never share the public job id: core.jobs.input_key
        job = params.to_job(ctx.fixed_job_id or new_job_id(), ctx.request_id,
                            private_id=private_id,
                            image_keys=[input_key(private_id, f"image{i}")
                                        for i in range(len(probed))],
                            mask_key=input_key(private_id, "mask") if mask else None)
        ctx.before_enqueue = lambda: self._store_inputs(job, upload, transparent)
        if params.stream:
            return await self.run_streaming(params, job, ctx)
        outcome = await self.run_job(params.pipeline.queue, job, ctx)
        return await self.respond(params, outcome, base_url)

    async def _store_inputs(self, job: RenderJob, upload: Uploaded, transparent: bool) -> None:
        """Decode and store what the admitted job uses, a few uploads at a time in the whole
        gateway: a decoded 4096x4096 image is 64 MB, and a burst must not hold one each."""
        inputs = [(data, "image", key, transparent and i == 0)
                  for i, (data, key) in enumerate(zip(upload.images[:len(job.image_keys)],
                                                      job.image_keys, strict=True))]
        if upload.mask is not None and job.mask_key:
            inputs.append((upload.mask, "mask", job.mask_key, False))
        limit = self.settings.max_image_pixels
        async with self.decodes:
            for data, param, key, need_transparency in inputs:
                png = await run_in_threadpool(prepare, data, param, limit, need_transparency)
                try:
                    await run_in_threadpool(self.storage.put, key, png, "image/png")
                except StorageError as exc:
                    raise storage_unavailable("Storage is unavailable; try again shortly.") from exc

    async def respond(self, params: ImageParams, outcome: Outcome,
                      base_url: str) -> dict[str, Any]:
        assert outcome.result is not None
        base = self.settings.public_url or base_url
        data: list[dict[str, Any]] = []
        try:
            if params.response_format == "b64_json":
                blobs = await asyncio.gather(*(run_in_threadpool(self.storage.get, key)
                                               for key in outcome.result.keys))
                data = [{"b64_json": base64.b64encode(b).decode("ascii"),
                         "revised_prompt": params.revised_prompt}
                        for b in blobs]
            else:
                data = [{"url": self.storage.url(key, base),
                         "revised_prompt": params.revised_prompt}
                        for key in outcome.result.keys]
        except StorageError as exc:
            raise storage_unavailable(
                "The generated image could not be read from storage.") from exc
        for item, seed in zip(data, outcome.result.seeds, strict=True):
            item["seed"] = seed  # Easel extension: reproduce an image with extra_body={"seed":..}
        self.metrics.images.labels(params.model.id).inc(len(data))
        response: dict[str, Any] = {"created": int(time.time()), "data": data}
        if params.rules.response_meta:
            response.update(self._meta(params), usage=self._usage(params))
        return response

