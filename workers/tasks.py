"""The RQ job function: render one job on a resident pipeline and store its images."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from functools import partial
from typing import Any

from PIL import Image
from rq import get_current_job

from core.jobs import (
    Outcome,
    RenderJob,
    RenderResult,
    image_key,
    partial_channel,
    partial_key,
    publish_outcome,
)
from core.storage import CONTENT_TYPES, StorageError
from models import rendering, reranking
from models.adapters import AdapterError
from workers import batching, finishing, runtime
from workers.encoding import encode, white_to_alpha
from workers.patient_storage import patiently

log = logging.getLogger("easel.worker")


def _load(rt: runtime.Runtime, key: str) -> Image.Image:
    blob = patiently(partial(rt.storage.get, key), rt.settings.storage_patience_seconds,
                     f"reading {key}")
    image = Image.open(io.BytesIO(blob))
    image.load()
    return image


def _partial_publisher(rt: runtime.Runtime, job: RenderJob) -> Any:
    """Store each preview and announce its key (images themselves never cross Redis)."""
    rq_job = get_current_job()
    if not job.partial_images or rq_job is None:
        return None

    def on_partial(index: int, image: Image.Image) -> None:
        key = partial_key(job.private_id, index)  # not the public job id: see core.jobs
        try:
            rt.storage.put(key, encode(image, "png"), CONTENT_TYPES["png"])
        except StorageError as exc:  # a preview is a courtesy: never hold the render for it
            log.warning("preview %d of job %s not stored: %s", index, job.job_id, exc)
            return
        rq_job.connection.publish(partial_channel(job.job_id),
                                  json.dumps({"index": index, "key": key}))

    return on_partial


def _run(loaded: Any, job: RenderJob,
         rt: runtime.Runtime) -> tuple[reranking.Drawn, float, bool]:
    """The job's images with their seeds, the seconds of the pipeline call that drew them, and
    whether that was a batch's call (workers.batching), made before this job function ran."""
    batched = batching.take(job.job_id)
    if batched is not None:
        return batched, batching.render_seconds(job.job_id) or 0.0, True
    t0 = time.perf_counter()
    with rt.metrics.rendering(job.pipeline) if rt.metrics else contextlib.nullcontext(), \
            loaded.use_scheduler(job.scheduler), \
            loaded.use_adapters(batching.adapter_set(job)):
        images = _call(loaded, job, rt)
    return images, time.perf_counter() - t0, False


def _call(loaded: Any, job: RenderJob, rt: runtime.Runtime) -> reranking.Drawn:
    on_partial = _partial_publisher(rt, job)
    if job.kind == "generate":  # best of job.best_of candidates each (models.reranking)
        (drawn,) = reranking.generate_best(
            loaded, [reranking.Ask(job.prompt, job.seeds, job.best_of)], job.negative_prompt,
            job.steps, job.guidance, job.width, job.height, job.partial_images, on_partial)
        return drawn
    images = [_load(rt, key) for key in job.image_keys]
    if job.kind == "variation":
        return reranking.Drawn(rendering.vary(
            loaded, job.seeds, job.steps, job.guidance, job.width, job.height, images[0],
            job.strength or loaded.spec.strength), job.seeds, None)
    mask = _load(rt, job.mask_key) if job.mask_key else None
    return reranking.Drawn(rendering.edit(
        loaded, job.prompt, job.negative_prompt, job.seeds, job.steps, job.guidance, job.width,
        job.height, images, mask, job.strength, job.partial_images, on_partial,
        job.input_fidelity), job.seeds, None)


def render(payload: dict[str, Any]) -> dict[str, Any]:
    job = RenderJob.model_validate(payload)
    rt = runtime.current()
    loaded = rt.pipeline(job.pipeline)
    if loaded is None:
        raise RuntimeError(f"this worker does not serve pipeline {job.pipeline!r}")
    if rt.metrics is not None:
        rt.metrics.job_started(job.pipeline, get_current_job())
    t0 = time.perf_counter()
    try:
        drawn, render_seconds, in_batch = _run(loaded, job, rt)
    except AdapterError:
        rq_job = get_current_job()
        if rq_job is not None:  # a bad adapter file fails every retry too: give up now
            rq_job.retries_left = 0
        raise
    images = drawn.images
    if job.background == "transparent":
        images = [white_to_alpha(im) for im in images]
    finish = finishing.for_job(rt, job)  # classifier, watermark, encoding, C2PA signature
    withheld = finish.screen(images)
    keys = []
    for i, image in enumerate([] if withheld else images):
        key = image_key(job.job_id, i, job.output_format)
        blob = finish(image)
        patiently(partial(rt.storage.put, key, blob, CONTENT_TYPES[job.output_format]),
                  rt.settings.storage_patience_seconds, f"storing {key}")
        keys.append(key)
    result = RenderResult(keys=keys, seeds=drawn.seeds, seconds=time.perf_counter() - t0,
                          safety_violations=withheld)
    if rt.metrics is not None:
        rt.metrics.job_finished(job.pipeline, job.job_id, len(keys), job.steps, render_seconds)
    on_worker = result.seconds + (render_seconds if in_batch else 0.0)
    log.info("job %s done (request %s): %d image(s), rendered in %.2fs, %.2fs on this worker",
             job.job_id, job.request_id, len(keys), render_seconds, on_worker,
             extra={"job_id": job.job_id, "request_id": job.request_id, "model": job.model,
                    "pipeline": job.pipeline, "status": "finished", "images": len(keys),
                    "render_seconds": round(render_seconds, 3),
                    "seconds": round(on_worker, 3)})
    rq_job = get_current_job()
    if rq_job is not None:
        outcome = Outcome(job_id=job.job_id, status="finished", result=result)
        publish_outcome(rq_job.connection, outcome, rt.settings.outcome_ttl_seconds)
    return result.model_dump()
