"""A raw body -> validated `ImageParams`, or a 400 in OpenAI's envelope that names the `param`.

Types and ranges come from the pydantic request models (core/requests.py), a model family's
narrower rules from core/rules.py; pydantic's errors are turned into OpenAI's envelope here, so a
client never sees FastAPI's 422.  Order: unknown fields, the model (404 before anything else about
the body), the types, then the family's rules.  JSON bodies are validated strictly (`"n": "2"` is
a 400); multipart text (`n=2`, `stream=true`) is converted first.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.catalog import Catalog, ModelSpec
from core.errors import OpenAIError, bad_request, model_not_found
from core.requests import MAX_SEED, WIRE_MODELS, EditJSONRequest, ImageParams, ImageRef
from core.rules import QUALITY_STEPS, STYLE_GUIDANCE, FamilyRules, Operation
from service.best_of import best_of_ranks, chosen_best_of
from service.loras import chosen_loras, json_field

T = TypeVar("T", bound=str)
MAX_INT_DIGITS = 64  # far past any valid value (a seed has at most 19 digits)


@dataclass(frozen=True)
class LongInt:
    """A JSON integer literal too long to be any valid value, kept unconverted: int() of client
    text past 4300 digits raises ValueError, and the validators answer a 400 naming it."""

    digits: int


def parse_int(text: str) -> int | LongInt:
    """json.loads' parse_int: cheap and bounded for any length of literal."""
    return LongInt(len(text.lstrip("-"))) if len(text) > MAX_INT_DIGITS else int(text)


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", LongInt: "integer"}.get(type(v), type(v).__name__)


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "bool_type": "a boolean",
             "string_type": "a string", "list_type": "an array", "model_type": "an object",
             "dict_type": "an object", "model_attributes_type": "an object"}
# Request fields whose values a family narrows -> the FamilyRules attribute listing them.
CHOICES = {"quality": "qualities", "style": "styles", "response_format": "response_formats",
           "output_format": "output_formats", "background": "backgrounds",
           "moderation": "moderations", "input_fidelity": "input_fidelities"}
_PARSING = {"int_parsing": "integer", "float_parsing": "number", "bool_parsing": "boolean"}


def _param(loc: tuple[int | str, ...]) -> str:
    """('images', 0, 'image_url') -> 'images[0].image_url', as OpenAI names nested params."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_of(exc: ValidationError, rules: FamilyRules | None = None,
             model: str = "") -> OpenAIError:
    """The first pydantic error as OpenAI's 400 (the same codes the SDKs know); an enum's
    message lists what `model`'s family accepts when `rules` are given."""
    err = exc.errors()[0]
    kind, name, value = err["type"], _param(err["loc"]), err.get("input")
    choices = getattr(rules, CHOICES.get(name, ""), None)
    if kind == "literal_error" and choices:
        return bad_request(f"Invalid value for '{name}': {str(value)[:40]!r}. Supported values "
                           f"for model '{model}' are: {', '.join(map(repr, choices))}.", name,
                           "invalid_value")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {name}", name,
                           "unknown_parameter")
    if kind == "missing":
        return bad_request(f"You must provide {name!r}.", name, "missing_required_parameter")
    if kind in _EXPECTED:
        return bad_request(f"Invalid type for '{name}': expected {_EXPECTED[kind]}, but got "
                           f"{_type_name(value)} instead.", name, "invalid_type")
    if kind in _PARSING:
        return bad_request(f"Invalid value for '{name}': {str(value)[:40]!r} is not a valid "
                           f"{_PARSING[kind]}.", name, "invalid_type")
    if kind == "literal_error":
        return bad_request(f"Invalid value for '{name}': {str(value)[:40]!r}. Supported values "
                           f"are: {err['ctx']['expected']}.", name, "invalid_value")
    if kind == "string_too_long":
        return bad_request(f"'{name}' is too long: at most {err['ctx']['max_length']} "
                           "characters.", name, "string_above_max_length")
    limits = {"greater_than_equal": "at least {ge}", "less_than_equal": "at most {le}",
              "greater_than": "more than {gt}", "less_than": "less than {lt}"}
    if kind in limits:
        bound = limits[kind].format(**err["ctx"])
        return bad_request(f"Invalid value for '{name}': {value} is outside the allowed range "
                           f"(it must be {bound}).", name, "invalid_value")
    return bad_request(f"Invalid value for '{name}': {err['msg']}.", name, "invalid_value")


def _scan(value: Any, name: str) -> None:
    """What pydantic would pass or mangle: integers too long to convert, and the unpaired
    surrogates of JSON's "\\ud800" escapes, which no tokenizer or log can encode."""
    if isinstance(value, LongInt):
        raise bad_request(f"Invalid value for '{name}': a {value.digits}-digit integer is "
                          "outside the allowed range.", name, "invalid_value")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise bad_request(f"Invalid value for '{name}': the text contains an unpaired "
                              f"surrogate at position {exc.start}; send valid Unicode.", name,
                              "invalid_value") from exc
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _scan(item, f"{name}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _scan(item, f"{name}.{key}")


def resolve_model(body: dict[str, Any], catalog: Catalog) -> ModelSpec:
    name = body.get("model")
    if name is not None and not isinstance(name, str):
        raise bad_request(f"Invalid type for 'model': expected a string, but got "
                          f"{_type_name(name)} instead.", "model", "invalid_type")
    if name is None:
        return catalog.default_model()
    model = catalog.model(name)
    if model is None:
        raise model_not_found(name)
    return model


def _unsupported(name: str, model: str) -> OpenAIError:
    return bad_request(f"'{name}' is not supported for model '{model}'.", name,
                       "unsupported_parameter")


def _choice(name: str, value: T | None, allowed: tuple[T, ...], model: str) -> T | None:
    if value is None:
        return None
    if not allowed:
        raise _unsupported(name, model)
    if value not in allowed:
        raise bad_request(f"Invalid value for '{name}': '{value}'. Supported values for model "
                          f"'{model}' are: {', '.join(repr(a) for a in allowed)}.", name,
                          "invalid_value")
    return value


def _size(rules: FamilyRules, size: str, model: str) -> tuple[int, int]:
    why = rules.size_error(size)
    if why is None:
        return rules.dimensions(size)
    listed = ", ".join(repr(s) for s in rules.sizes)
    if rules.custom_sizes is not None and why != "unsupported":
        raise bad_request(f"Invalid value for 'size': '{size[:40]}': {why}.", "size",
                          "invalid_value")
    more = " or WIDTHxHEIGHT" if rules.custom_sizes is not None else ""
    raise bad_request(f"Invalid value for 'size': '{size[:40]}'. Supported values for model "
                      f"'{model}' are: {listed}{more}.", "size", "invalid_value")


def read_body(body: Any, catalog: Catalog, kind: Operation, *, form: bool = False,
              wire: type[BaseModel] | None = None) -> tuple[ModelSpec, BaseModel]:
    """Fields, model and types: everything but the family's rules."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_type")
    wire = wire or WIRE_MODELS[kind]
    body = {k: v for k, v in body.items() if v != ""}  # an empty field is a field not given
    if form and isinstance(body.get("loras"), str):  # multipart: the list as JSON text
        body["loras"] = json_field(body["loras"], "loras")
    unknown = sorted(set(body) - set(wire.model_fields))
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0],
                          "unknown_parameter")
    for name, value in body.items():
        _scan(value, name)
    model = resolve_model(body, catalog)
    try:
        return model, wire.model_validate(body, strict=not form)
    except ValidationError as exc:
        raise error_of(exc, catalog.rules_of(model), model.id) from exc


def parse_request(body: Any, catalog: Catalog, kind: Operation = "generate", *,
                  form: bool = False) -> ImageParams:
    """Validate a generation, edit or variation request against its model's family rules."""
    model, req = read_body(body, catalog, kind, form=form)
    return apply_rules(req, model, catalog, kind)


def parse_json_edit(body: Any, catalog: Catalog) -> tuple[ImageParams, list[ImageRef],
                                                          ImageRef | None]:
    model, req = read_body(body, catalog, "edit", wire=EditJSONRequest)
    assert isinstance(req, EditJSONRequest)
    return apply_rules(req, model, catalog, "edit"), req.images, req.mask


def apply_rules(req: Any, model: ModelSpec, catalog: Catalog, kind: Operation) -> ImageParams:
    rules, pipe, mid = catalog.rules_of(model), catalog.pipeline_of(model), model.id
    if kind not in rules.operations:
        what = {"edit": "image edits", "variation": "image variations"}.get(kind, kind)
        raise bad_request(f"Model '{mid}' does not support {what}.", "model", "unsupported_model")
    prompt: str = getattr(req, "prompt", "")
    if kind != "variation" and not prompt.strip():
        raise bad_request("You must provide a prompt.", "prompt", "missing_required_parameter")
    if len(prompt) > rules.max_prompt:
        raise bad_request(f"'prompt' is too long: {len(prompt)} characters, the maximum for "
                          f"this model is {rules.max_prompt}.", "prompt",
                          "string_above_max_length")
    n = req.n or 1
    if n > rules.max_n:
        raise bad_request(f"Invalid value for 'n': model '{mid}' supports at most "
                          f"{rules.max_n} image(s) per request.", "n", "invalid_value")
    width, height = _size(rules, req.size or rules.default_size, mid)
    quality = _choice("quality", getattr(req, "quality", None), rules.qualities, mid)
    style = _choice("style", getattr(req, "style", None), rules.styles, mid)
    response_format = (_choice("response_format", req.response_format, rules.response_formats,
                               mid) or rules.default_response_format)
    output_format = _choice("output_format", req.output_format, rules.output_formats, mid)
    if req.output_compression is not None:
        if not rules.output_formats:
            raise _unsupported("output_compression", mid)
        if output_format in (None, "png"):
            raise bad_request("'output_compression' applies to jpeg and webp output only.",
                              "output_compression", "invalid_value")
    background = _choice("background", getattr(req, "background", None), rules.backgrounds, mid)
    if background == "transparent" and output_format == "jpeg":
        raise bad_request("A transparent background needs output_format 'png' or 'webp'.",
                          "background", "invalid_value")
    _choice("moderation", getattr(req, "moderation", None), rules.moderations, mid)
    fidelity = _choice("input_fidelity", getattr(req, "input_fidelity", None),
                       rules.input_fidelities, mid) or rules.default_input_fidelity
    stream = bool(getattr(req, "stream", None))
    partial_images = getattr(req, "partial_images", None)
    if stream and not rules.streaming:
        raise bad_request(f"Streaming is not supported for model '{mid}'.", "stream",
                          "unsupported_parameter")
    if partial_images is not None and not rules.streaming:
        raise _unsupported("partial_images", mid)
    if stream and n > 1:
        raise bad_request("Streaming returns one image: send n=1 with stream=true.", "n",
                          "invalid_value")
    negative = getattr(req, "negative_prompt", None)
    if negative is not None and len(negative) > rules.max_prompt:
        raise bad_request(f"'negative_prompt' is too long: at most {rules.max_prompt} "
                          "characters.", "negative_prompt", "string_above_max_length")
    if req.steps is not None and req.steps > pipe.max_steps:
        raise bad_request(f"Invalid value for 'steps': {req.steps} is outside the allowed range "
                          f"1 to {pipe.max_steps}.", "steps", "invalid_value")
    scheduler = getattr(req, "scheduler", None)
    if scheduler is not None and scheduler not in pipe.schedulers:
        raise bad_request(f"Invalid value for 'scheduler': model '{mid}' takes "
                          f"{', '.join(pipe.schedulers) or 'no scheduler choice'}.",
                          "scheduler", "invalid_value")
    quality = quality or rules.default_quality
    best_of = chosen_best_of(req, pipe, quality, n, kind, mid)
    # With a scorer, quality is the number of candidates (core.rules.QUALITY_BEST_OF), not steps.
    factor = 1.0 if best_of_ranks(pipe, kind) else QUALITY_STEPS[quality]
    steps = req.steps or max(1, min(pipe.max_steps, round(pipe.steps * factor)))
    # Variations have no prompt to guide towards: classifier-free guidance is off (1.0).
    guidance = 1.0 if kind == "variation" else pipe.guidance * STYLE_GUIDANCE[style or "vivid"]
    guidance_scale = getattr(req, "guidance_scale", None)
    strength = getattr(req, "strength", None)
    if strength is not None and pipe.reference_images:
        raise bad_request(f"Model '{mid}' draws from reference images, not image-to-image: it "
                          "takes no 'strength' (input_fidelity sets how closely it follows "
                          "them).", "strength", "unsupported_parameter")
    # A given seed makes the request reproducible: image i uses seed + i.
    base = req.seed if req.seed is not None else secrets.randbelow(2**31)
    return ImageParams(
        model=model, pipeline=pipe, rules=rules, kind=kind, prompt=prompt,
        negative_prompt=negative, n=n, width=width, height=height, quality=quality,
        style=style, response_format=response_format, output_format=output_format or "png",
        output_compression=req.output_compression, transparent=background == "transparent",
        seeds=[(base + i) % (MAX_SEED + 1) for i in range(n)], steps=steps,
        guidance=guidance if guidance_scale is None else guidance_scale,
        strength=strength if strength is not None else (
            pipe.strength if kind == "variation" and not pipe.reference_images else None),
        input_fidelity=fidelity,
        stream=stream, partial_images=partial_images or 0, scheduler=scheduler, user=req.user,
        loras=chosen_loras(req, catalog, model), best_of=best_of)

