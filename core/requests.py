"""The request bodies of the three image endpoints, and a validated request's one way to a job.

The pydantic models are the wire contract every family shares: field names, types, ranges and
the vocabulary of core/rules.py.  A family narrows them (service/validation.py applies
`FamilyRules`); the OpenAPI document is generated from these models (service/openapi.py).
Every optional field is nullable: the SDK sends `null` for a `None` argument, and it means
"the default", as does an empty string (an HTML form's or Open WebUI's empty field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.catalog import ModelSpec, PipelineSpec
from core.jobs import AdapterUse, RenderJob, new_job_id
from core.rules import (
    LORA_MAX_SCALE,
    MAX_BEST_OF,
    MAX_LORAS,
    Background,
    FamilyRules,
    Fidelity,
    Moderation,
    Operation,
    OutputFormat,
    Quality,
    ResponseFormat,
    Scheduler,
    Style,
)

MAX_SEED = 2**63 - 1


class LoraChoice(BaseModel):
    """One entry of Easel's `loras` extension: a catalog adapter and the scale to apply it at."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(max_length=128, description="An adapter of the model's `easel.adapters` "
                                                  "in GET /v1/models.")
    scale: float | None = Field(None, ge=-LORA_MAX_SCALE, le=LORA_MAX_SCALE,
                                description="Easel: the adapter's strength (default: the "
                                            "catalog's).")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = Field(None, description="A model id from GET /v1/models.",
                              examples=["dall-e-2"])
    n: int | None = Field(None, ge=1, le=10, description="Images to make (per-model maximum).")
    size: str | None = Field(None, description="WIDTHxHEIGHT or auto, as the model allows.",
                             examples=["256x256"])
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, max_length=256)
    output_format: OutputFormat | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="Easel: image i uses seed + i (reproducible).")
    steps: int | None = Field(None, ge=1, description="Easel: denoising steps.")
    scheduler: Scheduler | None = Field(
        None, description="Easel: the sampler, one of the model's `easel.schedulers` in "
                          "GET /v1/models (default: the checkpoint's own).")
    loras: list[LoraChoice] | None = Field(
        None, max_length=MAX_LORAS,
        description="Easel: LoRA adapters to render with, from the model's `easel.adapters` "
                    "in GET /v1/models (multipart: this list as JSON text).")


class VariationRequest(_Body):
    strength: float | None = Field(None, gt=0, le=1,
                                   description="Easel: how much of the input is redrawn.")


class _Prompted(_Body):
    prompt: str = Field(description="What to draw.",
                        examples=["a red circle to the left of a blue square"])
    quality: Quality | None = None
    background: Background | None = None
    moderation: Moderation | None = None
    stream: bool | None = None
    partial_images: int | None = Field(None, ge=0, le=3)
    negative_prompt: str | None = Field(None, description="Easel: what to steer away from.")
    guidance_scale: float | None = Field(None, ge=0, le=30, description="Easel: CFG scale.")


class GenerationRequest(_Prompted):
    style: Style | None = None
    best_of: int | None = Field(
        None, ge=1, le=MAX_BEST_OF,
        description="Easel: draw this many candidates per image and return the best by the "
                    "model's scorer (`easel.best_of` in GET /v1/models; default: set by "
                    "`quality`).")


class EditRequest(_Prompted):
    input_fidelity: Fidelity | None = None
    strength: float | None = Field(None, gt=0, le=1,
                                   description="Easel: how much of the input is redrawn.")


class ImageRef(BaseModel):
    """An input image of a JSON edit: a `data:` URL, an `http(s)` URL or an uploaded file."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = None
    file_id: str | None = Field(None, max_length=128,
                                description="A file of yours from POST /v1/files.")


class EditJSONRequest(EditRequest):
    """`POST /v1/images/edits` with a JSON body: images by URL instead of file parts."""

    images: list[ImageRef] = Field(min_length=1, max_length=16)
    mask: ImageRef | None = None


WIRE_MODELS: dict[Operation, type[_Body]] = {"generate": GenerationRequest, "edit": EditRequest,
                                              "variation": VariationRequest}


@dataclass(frozen=True)
class ImageParams:
    """A request validated against its model's family, with every default filled in."""

    model: ModelSpec
    pipeline: PipelineSpec
    rules: FamilyRules
    kind: Operation
    prompt: str
    negative_prompt: str | None
    n: int
    width: int
    height: int
    quality: Quality
    style: Style | None
    response_format: ResponseFormat
    output_format: OutputFormat
    output_compression: int | None
    transparent: bool
    seeds: list[int]
    steps: int
    guidance: float
    strength: float | None
    input_fidelity: Fidelity
    stream: bool
    partial_images: int
    # Set by the gateway's prompt gate (service/prompts.py): the moderation level that applies,
    # and the prompt rendered when it is reported back as `revised_prompt`.
    moderation: Literal["auto", "low", "off"] = "auto"
    revised_prompt: str | None = None
    scheduler: Scheduler | None = None  # None: the checkpoint's own
    # LoRA adapters (name, scale), sorted by name: one adapter set, however the request ordered it.
    loras: tuple[tuple[str, float], ...] = ()
    # OpenAI's end-user id, for tracing abuse back: it goes on the request's log line.
    user: str | None = None
    best_of: int = 1  # candidates per image, ranked by the pipeline's scorer (1: no ranking)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def to_job(self, job_id: str, request_id: str | None = None, *,
               private_id: str | None = None, image_keys: list[str] | None = None,
               mask_key: str | None = None) -> RenderJob:
        """The job a worker renders: the one place request fields become job fields."""
        return RenderJob(
            job_id=job_id, kind=self.kind, model=self.model.id, pipeline=self.pipeline.name,
            prompt=self.prompt, negative_prompt=self.negative_prompt, width=self.width,
            height=self.height, n=self.n, seeds=self.seeds, steps=self.steps,
            guidance=self.guidance, output_format=self.output_format,
            output_compression=self.output_compression, strength=self.strength,
            input_fidelity=self.input_fidelity,
            background="transparent" if self.transparent else "opaque",
            partial_images=self.partial_images if self.stream else 0,
            image_keys=image_keys or [], mask_key=mask_key, request_id=request_id,
            private_id=private_id or new_job_id(), moderation=self.moderation,
            scheduler=self.scheduler,
            loras=[AdapterUse(name=name, scale=scale) for name, scale in self.loras],
            best_of=self.best_of)
