"""The job payload that crosses Redis (plain JSON, never pickle) and how outcomes are announced."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.rules import Fidelity, Operation, OutputFormat

# Workers run this function path; the gateway enqueues it by name and never imports it.
RENDER_TASK = "workers.tasks.render"
DONE_CHANNEL = "easel:done"  # pub/sub: the job id of every finished or failed job
# Webhook deliveries: their own RQ queue and task, run by `easel webhooks` (workers/deliveries.py),
# never by the render workers (core.allowed_jobs keeps each worker to its one task).
WEBHOOK_TASK = "workers.deliveries.deliver"
WEBHOOK_QUEUE = "easel:webhooks"
BATCH_QUEUE_SUFFIX = ":batch"


def batch_queue(queue: str) -> str:
    """The lower-priority twin of a pipeline's queue: workers take from it only when the live
    queue is empty (RQ takes queues in order), so batch work never delays a live request."""
    return f"{queue}{BATCH_QUEUE_SUFFIX}"


def is_batch_queue(queue: str) -> bool:
    return queue.endswith(BATCH_QUEUE_SUFFIX)


def outcome_key(job_id: str) -> str:
    return f"easel:outcome:{job_id}"


def partial_channel(job_id: str) -> str:
    """Pub/sub channel announcing the storage key of each preview of a streaming job."""
    return f"easel:partial:{job_id}"


def partial_key(private_id: str, index: int) -> str:
    """A streaming preview: under the job's private id, so a result URL does not reveal it."""
    return f"partials/{private_id}/{index}.png"


def new_job_id() -> str:
    """Random and unguessable: it is also the directory part of every result URL."""
    return secrets.token_hex(16)


RESULT_PREFIX = "images/"  # the only keys ever served by /files or given a presigned URL


def image_key(job_id: str, index: int, ext: str) -> str:
    """Derived from job id and index, so a retried job overwrites instead of duplicating."""
    return f"{RESULT_PREFIX}{job_id}/{index}.{ext}"


def is_result_key(key: str) -> bool:
    return key.startswith(RESULT_PREFIX)


def input_key(private_id: str, name: str, ext: str = "png") -> str:
    """An uploaded input: under the private id, never the job id that every result URL shows
    (an edit's source photo is the client's, not something its result link should expose)."""
    return f"inputs/{private_id}/{name}.{ext}"


STORED_PREFIX = "stored/"  # Files API uploads and batch outputs: private, purged by expiry


def stored_file_key(private_id: str) -> str:
    """A Files API object: under a random private id, never its public `file-...` id, and
    never a result key, so neither /files nor a presigned URL ever serves it."""
    return f"{STORED_PREFIX}{private_id}/content"


class AdapterUse(BaseModel):
    """A LoRA adapter a job renders with (core.adapters), at its resolved scale."""

    name: str
    scale: float


class RenderJob(BaseModel):
    job_id: str
    kind: Operation = "generate"
    model: str
    pipeline: str
    prompt: str = ""
    negative_prompt: str | None = None
    width: int
    height: int
    n: int = Field(ge=1)
    seeds: list[int]
    steps: int
    guidance: float
    output_format: OutputFormat = "png"
    output_compression: int | None = None
    image_keys: list[str] = []
    mask_key: str | None = None
    strength: float | None = None  # None: the edit's default for its input_fidelity
    input_fidelity: Fidelity = "low"  # edits: how much of the source survives (core.rules)
    background: Literal["opaque", "transparent"] = "opaque"
    partial_images: int = 0  # previews published while denoising (stream=true)
    # Directory of the job's inputs and previews: random and independent of job_id, which is
    # public in every result URL.  The default covers payloads from an older gateway.
    private_id: str = Field(default_factory=new_job_id)
    request_id: str | None = None  # ties the worker's job log line to the gateway's request
    # How strictly the worker's output classifier judges the images (docs/moderation.md).
    moderation: Literal["auto", "low", "off"] = "auto"
    scheduler: str | None = None  # Easel's sampler choice (core.rules.SCHEDULERS); None: default
    loras: list[AdapterUse] = []  # LoRA adapters, sorted by name; []: the base weights alone
    # Candidates drawn per image, of which the pipeline's scorer keeps the best (`best_of`).
    best_of: int = Field(default=1, ge=1)

    @property
    def candidates(self) -> int:
        """Images the pipeline draws for this job: what batching counts."""
        return self.n * self.best_of


class RenderResult(BaseModel):
    keys: list[str]
    seeds: list[int]
    seconds: float
    # The output classifier's categories when it withheld the images (keys is then empty).
    safety_violations: list[str] = []


class Outcome(BaseModel):
    """What the gateway reads back: the result, or a failure it can explain to the client."""

    job_id: str
    status: Literal["finished", "failed"]
    result: RenderResult | None = None
    error: str | None = None
    error_type: str | None = None


def publish_outcome(redis: Any, outcome: Outcome, ttl: int) -> None:
    """Write the outcome under its key, then announce the job id to waiting gateways."""
    with redis.pipeline() as pipe:  # MULTI: the key exists before anyone hears about it
        pipe.set(outcome_key(outcome.job_id), outcome.model_dump_json(), ex=ttl)
        pipe.publish(DONE_CHANNEL, outcome.job_id)
        pipe.execute()
