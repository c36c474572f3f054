"""Turn a raw JSON body into validated generation parameters, or a 400 that names the `param`.

Validation is by hand rather than by a pydantic request model so that every failure is an
OpenAI-shaped 400 with `param` set (never FastAPI's 422), `null` always means "the default",
and rules depend on the chosen model's family (sizes, n, quality, style).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from core.catalog import QUALITY_STEPS, STYLE_GUIDANCE, Catalog, ModelSpec, PipelineSpec
from core.errors import bad_request, model_not_found

GENERATION_FIELDS = {
    "model", "prompt", "n", "size", "quality", "style", "response_format", "user",
    # gpt-image fields
    "background", "moderation", "output_format", "output_compression", "stream", "partial_images",
    # Easel extensions (the SDK sends them through extra_body)
    "seed", "steps", "guidance_scale", "negative_prompt",
}
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GenerationParams:
    model: ModelSpec
    pipeline: PipelineSpec
    prompt: str
    negative_prompt: str | None
    n: int
    size: str
    width: int
    height: int
    quality: str
    style: str | None
    response_format: str
    output_format: str
    output_compression: int | None
    background: str
    seeds: list[int]
    steps: int
    guidance: float
    user: str | None


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def _str(body: dict[str, Any], name: str, max_len: int | None = None) -> str | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise bad_request(f"Invalid type for '{name}': expected a string, but got "
                          f"{_type_name(v)} instead.", name, "invalid_type")
    if max_len is not None and len(v) > max_len:
        raise bad_request(f"'{name}' is too long: {len(v)} characters, the maximum for this "
                          f"model is {max_len}.", name, "string_above_max_length")
    return v


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad_request(f"Invalid type for '{name}': expected an integer, but got "
                          f"{_type_name(v)} instead.", name, "invalid_type")
    if not lo <= v <= hi:
        raise bad_request(f"Invalid value for '{name}': {v} is outside the allowed range "
                          f"{lo} to {hi}.", name, "invalid_value")
    return v


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], model: str) -> str | None:
    v = _str(body, name)
    if v is None:
        return None
    if not allowed:
        raise bad_request(f"'{name}' is not supported for model '{model}'.", name,
                          "unsupported_parameter")
    if v not in allowed:
        raise bad_request(f"Invalid value for '{name}': '{v}'. Supported values for model "
                          f"'{model}' are: {', '.join(repr(a) for a in allowed)}.", name,
                          "invalid_value")
    return v


def resolve_model(body: dict[str, Any], catalog: Catalog) -> ModelSpec:
    name = _str(body, "model")
    if name is None:  # OpenAI's default is dall-e-2; fall back to the first configured model
        name = "dall-e-2" if "dall-e-2" in catalog.models else next(iter(catalog.models))
    model = catalog.model(name)
    if model is None:
        raise model_not_found(name)
    return model


def parse_size(size: str, pipeline: PipelineSpec) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    w, h = size.split("x")
    return int(w), int(h)


def parse_generation(body: Any, catalog: Catalog) -> GenerationParams:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_type")
    unknown = sorted(set(body) - GENERATION_FIELDS)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0],
                          "unknown_parameter")
    model = resolve_model(body, catalog)
    fam, pipe = model.family, catalog.pipeline_of(model)
    prompt = _str(body, "prompt", fam.max_prompt)
    if prompt is None or not prompt.strip():
        raise bad_request("You must provide a prompt.", "prompt", "missing_required_parameter")
    n = _int(body, "n", 1, 10) or 1
    if n > fam.max_n:
        raise bad_request(f"Invalid value for 'n': model '{model.id}' supports at most "
                          f"{fam.max_n} image(s) per request.", "n", "invalid_value")
    size = _choice(body, "size", fam.sizes, model.id) or fam.default_size
    quality = _choice(body, "quality", fam.qualities, model.id) or fam.default_quality
    style = _choice(body, "style", fam.styles, model.id)
    response_format = (_choice(body, "response_format", fam.response_formats, model.id)
                       or fam.default_response_format)
    output_format = _choice(body, "output_format", ("png", "jpeg", "webp"), model.id) or "png"
    compression = _int(body, "output_compression", 0, 100)
    if compression is not None and output_format == "png":
        raise bad_request("'output_compression' applies to jpeg and webp output only.",
                          "output_compression", "invalid_value")
    background = _choice(body, "background", ("transparent", "opaque", "auto"), model.id) or "auto"
    if background == "transparent":
        raise bad_request("Transparent backgrounds are not supported by this model; use "
                          "'opaque' or 'auto'.", "background", "unsupported_value")
    _choice(body, "moderation", ("low", "auto"), model.id)
    if body.get("stream") not in (None, False):
        raise bad_request("Streaming is not supported by this server yet; send stream=false.",
                          "stream", "unsupported_parameter")
    _int(body, "partial_images", 0, 3)
    user = _str(body, "user", 256)
    negative = _str(body, "negative_prompt", fam.max_prompt)
    seed = _int(body, "seed", 0, MAX_SEED)
    steps = _int(body, "steps", 1, pipe.max_steps)
    if steps is None:
        steps = max(1, min(pipe.max_steps, round(pipe.steps * QUALITY_STEPS[quality])))
    guidance_raw = body.get("guidance_scale")
    if guidance_raw is None:
        guidance = pipe.guidance * STYLE_GUIDANCE.get(style or "vivid", 1.0)
    elif isinstance(guidance_raw, bool) or not isinstance(guidance_raw, int | float):
        raise bad_request("Invalid type for 'guidance_scale': expected a number.",
                          "guidance_scale", "invalid_type")
    elif not 0 <= guidance_raw <= 30:
        raise bad_request("Invalid value for 'guidance_scale': must be between 0 and 30.",
                          "guidance_scale", "invalid_value")
    else:
        guidance = float(guidance_raw)
    # A given seed makes the request reproducible: image i uses seed + i.
    base = seed if seed is not None else secrets.randbelow(2**31)
    seeds = [(base + i) % (MAX_SEED + 1) for i in range(n)]
    width, height = parse_size(size, pipe)
    return GenerationParams(model, pipe, prompt, negative, n, size, width, height, quality, style,
                            response_format, output_format, compression,
                            "opaque" if background == "auto" else background, seeds, steps,
                            guidance, user)

