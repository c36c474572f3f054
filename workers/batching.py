"""Cross-request batching: drain queued jobs that can share one pipeline call.

Jobs are compatible when everything but the prompt and the seeds matches (pipeline, size, steps,
guidance, negative prompt, scheduler, LoRA adapters and their scales).  Each image keeps its own
generator, so its pixels are the same whether it was batched or not.  The batched images are
parked here per job id; each job then runs through RQ's normal `perform_job` (started registry,
result, failure) and `workers.tasks` picks its images up instead of rendering them again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job

from core.allowed_jobs import EaselJob, refusal
from core.jobs import RenderJob
from models import reranking
from workers import runtime

log = logging.getLogger("easel.worker")
_parked: dict[str, reranking.Drawn] = {}
_seconds: dict[str, float] = {}  # job id -> seconds of the batched call that drew its images
_recent = {"batch": 1}  # jobs in the last drained batch: a cheap signal of concurrent load


def take(job_id: str) -> reranking.Drawn | None:
    """The images (and their seeds) rendered for this job in a batch, if any (taken once)."""
    return _parked.pop(job_id, None)


def render_seconds(job_id: str) -> float | None:
    """How long the batched call that drew this job's images took (taken once)."""
    return _seconds.pop(job_id, None)


def batch_key(job: RenderJob) -> tuple[Any, ...] | None:
    if job.kind != "generate" or job.partial_images:
        return None  # edits and variations carry their own inputs; n > 1 is already one call
    return (job.pipeline, job.width, job.height, job.steps, job.guidance, job.negative_prompt,
            job.scheduler,  # one sampler per pipeline call
            adapter_set(job))  # and one set of LoRA adapters: never mixed in a batch


def adapter_set(job: RenderJob) -> tuple[tuple[str, float], ...]:
    """The job's LoRA adapters as (name, scale) pairs, sorted: the batch key's part and what
    the pipeline's `use_adapters` takes."""
    return tuple(sorted((a.name, a.scale) for a in job.loras))


def payload_of(job: Job) -> RenderJob | None:
    if refusal(job) is not None:  # not Easel's task: never rendered here, refused by perform_job
        return None
    try:
        return RenderJob.model_validate(job.args[0])
    except Exception:
        return None


def drain(first: Job, queue: Any, max_images: int, max_wait: float, serializer: Any,
          in_hand: frozenset[str] = frozenset()) -> list[Job]:
    """Remove up to `max_images` worth of compatible jobs from `queue` (LREM: at most one
    worker wins each job), waiting at most `max_wait` seconds for more to arrive.

    A job already in hand (`first`, `in_hand`, or taken here) that is also still queued was put
    back by the reaper while this worker was stopped: its stale entry is dropped, never taken a
    second time into one batch."""
    head = payload_of(first)
    key = batch_key(head) if head else None
    if head is None or key is None:
        return []
    total = head.candidates  # images drawn: n x best_of
    taken: list[Job] = []
    deadline = time.monotonic() + max_wait
    while total < max_images:
        waiting = queue.get_job_ids(0, 64)
        if not waiting and not taken and _recent["batch"] <= 1:
            # Nobody else queued and the last call was alone too: no concurrent load, so a lone
            # request should not pay the gather window. Under load (the last call was a batch)
            # the window stays, since closed-loop clients resubmit a few milliseconds apart.
            break
        holding = in_hand | {first.id} | {j.id for j in taken}
        for job_id in waiting:
            if job_id in holding:
                queue.remove(job_id)
                continue
            try:
                job = EaselJob.fetch(job_id, connection=queue.connection, serializer=serializer)
            except NoSuchJobError:
                continue
            payload = payload_of(job)
            if (payload is None or batch_key(payload) != key
                    or total + payload.candidates > max_images):
                continue
            if queue.remove(job_id) == 1:
                taken.append(job)
                total += payload.candidates
        if total >= max_images or time.monotonic() >= deadline:
            break
        time.sleep(0.002)  # bounded by max_wait (milliseconds): a short gather window
    _recent["batch"] = 1 + len(taken)
    return taken


def claim_next(queue: Any, max_images: int, serializer: Any,
               in_hand: frozenset[str] = frozenset()) -> list[Job]:
    """Take the job at the head of the queue, with compatible followers, if it is a plain
    generation (others are left for RQ's own dequeue); no waiting: there is work in hand."""
    ids = queue.get_job_ids(0, 1)
    if not ids:
        return []
    if ids[0] in in_hand:  # a stale entry of a job this worker renders now (see drain)
        queue.remove(ids[0])
        return []
    try:
        job = EaselJob.fetch(ids[0], connection=queue.connection, serializer=serializer)
    except NoSuchJobError:
        return []
    payload = payload_of(job)
    if payload is None or batch_key(payload) is None or queue.remove(ids[0]) != 1:
        return []
    return [job, *drain(job, queue, max_images, 0.0, serializer, in_hand)]


def batchable(job: Job) -> bool:
    payload = payload_of(job)
    return payload is not None and batch_key(payload) is not None


def render_batch(loaded: Any, jobs: list[Job]) -> None:
    """One pipeline call for all `jobs`; park each job's images under its id."""
    payloads = [p for p in (payload_of(j) for j in jobs) if p is not None]
    asks = [reranking.Ask(p.prompt, p.seeds, p.best_of) for p in payloads]
    images = sum(p.candidates for p in payloads)
    first = payloads[0]
    metrics = runtime.current().metrics
    busy = metrics.rendering(first.pipeline) if metrics is not None else contextlib.nullcontext()
    t0 = time.perf_counter()
    with busy, loaded.use_scheduler(first.scheduler), loaded.use_adapters(adapter_set(first)):
        drawn = reranking.generate_best(loaded, asks, first.negative_prompt, first.steps,
                                        first.guidance, first.width, first.height)
    seconds = time.perf_counter() - t0
    if metrics is not None:  # one pipeline call: report its real batch size and time once
        metrics.rendered(first.pipeline, images, first.steps, seconds,
                         job_ids=tuple(p.job_id for p in payloads))
    for p, mine in zip(payloads, drawn, strict=True):
        _parked[p.job_id] = mine
        _seconds[p.job_id] = seconds
    log.info("batched %d job(s), %d image(s) in one call of %.2fs: %s", len(payloads),
             images, seconds, " ".join(p.job_id for p in payloads),
             extra={"job_ids": [p.job_id for p in payloads],
                    "request_ids": [p.request_id for p in payloads],
                    "pipeline": first.pipeline, "images": images,
                    "render_seconds": round(seconds, 3)})


def discard(jobs: list[Job]) -> None:
    for job in jobs:
        _parked.pop(job.id, None)
        _seconds.pop(job.id, None)


def discard_all() -> None:
    """Forget every parked result (their jobs are re-run elsewhere)."""
    _parked.clear()
    _seconds.clear()
