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

_GPT = {"background", "moderation", "output_format", "output_compression", "stream",
        "partial_images"}
_GPT_ONLY = _GPT | {"input_fidelity"}
_EXTENSIONS = {"seed", "steps", "guidance_scale", "negative_prompt"}  # sent via extra_body
FIELDS = {
    "generate": {"model", "prompt", "n", "size", "quality", "style", "response_format", "user"}
    | _GPT | _EXTENSIONS,
    "edit": {"model", "prompt", "n", "size", "quality", "response_format", "user",
             "input_fidelity"} | _GPT | _EXTENSIONS | {"strength"},
    "variation": {"model", "n", "size", "response_format", "user", "output_format",
                  "output_compression", "seed", "steps", "strength"},
}
# Multipart carries every value as text; these fields are converted before validation.
_INT_FIELDS = {"n", "seed", "steps", "output_compression", "partial_images"}
_FLOAT_FIELDS = {"guidance_scale", "strength"}
_BOOL_FIELDS = {"stream"}
MAX_SEED = 2**63 - 1
MAX_INT_DIGITS = 64  # far past any valid value (a seed has at most 19 digits)


@dataclass(frozen=True)
class LongInt:
    """A JSON integer literal too long to be any valid value, kept unconverted: int() of client
    text past 4300 digits raises ValueError, and the validators answer a 400 naming it."""

    digits: int


def parse_int(text: str) -> int | LongInt:
    """json.loads' parse_int: cheap and bounded for any length of literal."""
    return LongInt(len(text.lstrip("-"))) if len(text) > MAX_INT_DIGITS else int(text)


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
    kind: str = "generate"
    strength: float | None = None
    stream: bool = False
    partial_images: int = 0


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", LongInt: "integer"}.get(type(v), type(v).__name__)


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
    try:  # JSON's "\ud800" escapes give lone surrogates, which no tokenizer or log can encode
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request(f"Invalid value for '{name}': the text contains an unpaired surrogate "
                          f"at position {exc.start}; send valid Unicode.", name,
                          "invalid_value") from exc
    return v


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, LongInt):
        raise bad_request(f"Invalid value for '{name}': a {v.digits}-digit integer is outside the "
                          f"allowed range {lo} to {hi}.", name, "invalid_value")
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


def parse_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    w, h = size.split("x")
    return int(w), int(h)


def coerce_form(form: dict[str, str]) -> dict[str, Any]:
    """Multipart text values -> the JSON types the validators expect (400 on bad text)."""
    out: dict[str, Any] = {}
    for name, value in form.items():
        try:
            if name in _INT_FIELDS:
                out[name] = int(value)
            elif name in _FLOAT_FIELDS:
                out[name] = float(value)
            elif name in _BOOL_FIELDS:
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                out[name] = value.lower() == "true"
            else:
                out[name] = value
        except ValueError as exc:
            raise bad_request(f"Invalid value for '{name}': {value[:40]!r} is not a valid "
                              f"{'integer' if name in _INT_FIELDS else 'value'}.", name,
                              "invalid_type") from exc
    return out


def _guidance(body: dict[str, Any], default: float) -> float:
    raw = body.get("guidance_scale")
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise bad_request("Invalid type for 'guidance_scale': expected a number.",
                          "guidance_scale", "invalid_type")
    if not 0 <= raw <= 30:
        raise bad_request("Invalid value for 'guidance_scale': must be between 0 and 30.",
                          "guidance_scale", "invalid_value")
    return float(raw)


def _strength(body: dict[str, Any], default: float | None) -> float | None:
    raw = body.get("strength")
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 1:
        raise bad_request("Invalid value for 'strength': must be a number in (0, 1].",
                          "strength", "invalid_value")
    return float(raw)


def parse_request(body: Any, catalog: Catalog, kind: str = "generate",
                  input_size: tuple[int, int] | None = None) -> GenerationParams:
    """Validate a generation, edit or variation request against its model's family rules."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_type")
    unknown = sorted(set(body) - FIELDS[kind])
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0],
                          "unknown_parameter")
    model = resolve_model(body, catalog)
    fam, pipe = model.family, catalog.pipeline_of(model)
    if kind not in fam.kinds:
        what = {"edit": "image edits", "variation": "image variations"}.get(kind, kind)
        raise bad_request(f"Model '{model.id}' does not support {what}.", "model",
                          "unsupported_model")
    prompt = _str(body, "prompt", fam.max_prompt)
    if kind != "variation" and (prompt is None or not prompt.strip()):
        raise bad_request("You must provide a prompt.", "prompt", "missing_required_parameter")
    n = _int(body, "n", 1, 10) or 1
    if n > fam.max_n:
        raise bad_request(f"Invalid value for 'n': model '{model.id}' supports at most "
                          f"{fam.max_n} image(s) per request.", "n", "invalid_value")
    default_size = fam.default_size
    if input_size is not None and f"{input_size[0]}x{input_size[1]}" in fam.sizes:
        default_size = f"{input_size[0]}x{input_size[1]}"  # edits keep the input's size
    size = _choice(body, "size", fam.sizes, model.id) or default_size
    quality = _choice(body, "quality", fam.qualities, model.id) or fam.default_quality
    style = _choice(body, "style", fam.styles, model.id)
    response_format = (_choice(body, "response_format", fam.response_formats, model.id)
                       or fam.default_response_format)
    if not fam.gpt_fields:
        for name in sorted(_GPT_ONLY & {k for k, v in body.items() if v is not None}):
            raise bad_request(f"'{name}' is only supported for GPT image models, not for "
                              f"'{model.id}'.", name, "unsupported_parameter")
    output_format = _choice(body, "output_format", ("png", "jpeg", "webp"), model.id) or "png"
    compression = _int(body, "output_compression", 0, 100)
    if compression is not None and output_format == "png":
        raise bad_request("'output_compression' applies to jpeg and webp output only.",
                          "output_compression", "invalid_value")
    background = _choice(body, "background", ("transparent", "opaque", "auto"), model.id) or "auto"
    if background == "transparent" and output_format == "jpeg":
        raise bad_request("A transparent background needs output_format 'png' or 'webp'.",
                          "background", "invalid_value")
    if background == "transparent" and not pipe.transparency:
        raise bad_request(f"Model '{model.id}' cannot render transparent backgrounds; use "
                          "'opaque' or 'auto'.", "background", "unsupported_value")
    _choice(body, "moderation", ("low", "auto"), model.id)
    _choice(body, "input_fidelity", ("low", "high"), model.id)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("Invalid type for 'stream': expected a boolean.", "stream",
                          "invalid_type")
    partial_images = _int(body, "partial_images", 0, 3) or 0
    if stream and not fam.streaming:
        raise bad_request(f"Streaming is only supported for GPT image models, not for "
                          f"'{model.id}'.", "stream", "unsupported_parameter")
    if stream and n > 1:
        raise bad_request("Streaming returns one image: send n=1 with stream=true.", "n",
                          "invalid_value")
    user = _str(body, "user", 256)
    negative = _str(body, "negative_prompt", fam.max_prompt)
    seed = _int(body, "seed", 0, MAX_SEED)
    steps = _int(body, "steps", 1, pipe.max_steps)
    if steps is None:
        steps = max(1, min(pipe.max_steps, round(pipe.steps * QUALITY_STEPS[quality])))
    # Variations have no prompt to guide towards: classifier-free guidance is off (1.0).
    default_guidance = 1.0 if kind == "variation" else pipe.guidance * STYLE_GUIDANCE.get(
        style or "vivid", 1.0)
    guidance = _guidance(body, default_guidance)
    strength = _strength(body, pipe.strength if kind == "variation" else None)
    # A given seed makes the request reproducible: image i uses seed + i.
    base = seed if seed is not None else secrets.randbelow(2**31)
    seeds = [(base + i) % (MAX_SEED + 1) for i in range(n)]
    width, height = parse_size(size)
    return GenerationParams(model, pipe, prompt or "", negative, n, size, width, height, quality,
                            style, response_format, output_format, compression,
                            "opaque" if background == "auto" else background, seeds, steps,
                            guidance, user, kind, strength, bool(stream), partial_images)


def parse_generation(body: Any, catalog: Catalog) -> GenerationParams:
    return parse_request(body, catalog, "generate")
