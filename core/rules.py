"""The request contract's vocabulary and each OpenAI model family's rules, as data.

Everything that says what a request may contain derives from here: the request models
(core/requests.py), the validation that applies a family's rules (service/validation.py), the
OpenAPI document (service/openapi.py), the `easel.rules` of every `/v1/models` entry and, through
that, the playground's choices (service/static/js/rules.js).  Change a family here and all of them
follow; tests/core/test_rules.py and tests/service/test_one_source.py hold them to it.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

Operation = Literal["generate", "edit", "variation"]
Quality = Literal["standard", "hd", "low", "medium", "high", "auto"]
Style = Literal["vivid", "natural"]
ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]
Background = Literal["transparent", "opaque", "auto"]
Moderation = Literal["low", "auto"]
Fidelity = Literal["high", "low"]
# Easel's `scheduler` extension: samplers of the discrete-time families (SD 1.x/2.x, SDXL),
# swapped per request on the resident weights (`from_config`). SD3 and FLUX (flow matching)
# have one sampler: their catalog entries set `schedulers = []`.
Scheduler = Literal["euler", "euler-a", "heun", "lms", "ddim", "pndm", "dpm++2m",
                    "dpm++2m-karras", "unipc"]

# Easel's `loras` extension: at most this many LoRA adapters per request, each at a scale in
# [-LORA_MAX_SCALE, LORA_MAX_SCALE] (negative scales steer away from an adapter's style).
MAX_LORAS = 4
LORA_MAX_SCALE = 2.0

# Easel's `best_of` extension (DALL·E 1's reranking): draw this many candidates per image and
# return the ones the pipeline's scorer (a catalog `scorer`, a small CLIP) matches best to the
# prompt. At most MAX_BEST_OF per image and MAX_CANDIDATES per request (n x best_of).
MAX_BEST_OF = 16
MAX_CANDIDATES = 32

OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
BACKGROUNDS: tuple[Background, ...] = get_args(Background)
MODERATIONS: tuple[Moderation, ...] = get_args(Moderation)
SCHEDULERS: tuple[Scheduler, ...] = get_args(Scheduler)
# name -> (diffusers class, overrides of the pipeline's own scheduler config)
SCHEDULER_CLASSES: dict[Scheduler, tuple[str, dict[str, bool]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


class SizeRule(BaseModel):
    """Any `WxH` inside these bounds (gpt-image-2's arbitrary sizes)."""

    model_config = ConfigDict(frozen=True)

    multiple: int = 16
    min_side: int = 16
    max_side: int = 3840
    max_ratio: float = 3.0  # long side over short side: 1:3 to 3:1
    max_pixels: int = 3840 * 2160

    def error(self, width: int, height: int) -> str | None:
        """Why `width`x`height` breaks the rule, or None."""
        if width % self.multiple or height % self.multiple:
            return f"both sides must be multiples of {self.multiple}"
        if min(width, height) < self.min_side or max(width, height) > self.max_side:
            return f"each side must be between {self.min_side} and {self.max_side} pixels"
        if max(width, height) > self.max_ratio * min(width, height):
            return f"the aspect ratio must be within 1:{self.max_ratio:g} and {self.max_ratio:g}:1"
        if width * height > self.max_pixels:
            return f"at most {self.max_pixels} pixels are allowed"
        return None


class FamilyRules(BaseModel):
    """What one OpenAI model family accepts (shared/openai-images-contract.md, section 8)."""

    model_config = ConfigDict(frozen=True)

    name: str
    operations: tuple[Operation, ...] = ("generate", "edit", "variation")
    sizes: tuple[str, ...]  # offered sizes; "auto" lets the server choose (`auto_size`)
    custom_sizes: SizeRule | None = None  # other WxH allowed too, within these bounds
    default_size: str
    auto_size: str = "1024x1024"
    max_n: int = 10
    qualities: tuple[Quality, ...]
    default_quality: Quality
    styles: tuple[Style, ...] = ()
    max_prompt: int = 4000
    response_formats: tuple[ResponseFormat, ...] = ("url", "b64_json")
    default_response_format: ResponseFormat = "url"
    streaming: bool = False  # `stream: true` with partial images, n = 1
    # Empty: the field is refused for the family (it is GPT-image only at OpenAI).
    output_formats: tuple[OutputFormat, ...] = ()
    backgrounds: tuple[Background, ...] = ()
    moderations: tuple[Moderation, ...] = ()
    input_fidelities: tuple[Fidelity, ...] = ()
    default_input_fidelity: Fidelity = "low"
    max_images: int = 1  # images one edit may send (the SDK's `image=[...]`)
    # An edit without a mask redraws the whole image (GPT image); False: the image's own
    # transparent pixels must mark the area, as dall-e-2 requires.
    whole_image_edits: bool = True
    # Responses carry top-level background, output_format, quality, size and usage.
    response_meta: bool = False

    def size_error(self, size: str) -> str | None:
        """Why `size` is not allowed for this family, or None."""
        if size in self.sizes:
            return None
        dims = parse_wxh(size)
        if self.custom_sizes is not None and dims is not None:
            return self.custom_sizes.error(*dims)
        return "unsupported"

    def dimensions(self, size: str) -> tuple[int, int]:
        dims = parse_wxh(self.auto_size if size == "auto" else size)
        assert dims is not None, size  # sizes are checked first (size_error)
        return dims


_WXH = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")  # ASCII digits only: int() takes others too


def parse_wxh(size: str) -> tuple[int, int] | None:
    """`1536x1024` -> (1536, 1024); None for anything else (signs, spaces, huge numbers)."""
    match = _WXH.fullmatch(size)
    return (int(match[1]), int(match[2])) if match else None


GPT_IMAGE = FamilyRules(
    name="gpt-image", operations=("generate", "edit"),
    sizes=("auto", "1024x1024", "1536x1024", "1024x1536"), default_size="auto",
    qualities=("low", "medium", "high", "auto"), default_quality="auto", max_prompt=32000,
    response_formats=("b64_json",), default_response_format="b64_json", streaming=True,
    output_formats=OUTPUT_FORMATS, backgrounds=BACKGROUNDS, moderations=MODERATIONS,
    input_fidelities=("high", "low"), max_images=16, response_meta=True)

FAMILIES: dict[str, FamilyRules] = {
    "dall-e-2": FamilyRules(name="dall-e-2", sizes=("256x256", "512x512", "1024x1024"),
                            default_size="1024x1024", qualities=("standard", "auto"),
                            default_quality="standard", max_prompt=1000,
                            whole_image_edits=False),
    "dall-e-3": FamilyRules(name="dall-e-3", operations=("generate",),
                            sizes=("1024x1024", "1792x1024", "1024x1792"),
                            default_size="1024x1024", max_n=1,
                            qualities=("standard", "hd", "auto"), default_quality="standard",
                            styles=("vivid", "natural"), max_images=0),
    "gpt-image": GPT_IMAGE,
    # gpt-image-2: any WxH within the rule (the listed sizes are the usual ones, offered first);
    # no transparent backgrounds; it always edits at high input fidelity.
    "gpt-image-2": GPT_IMAGE.model_copy(update={
        "name": "gpt-image-2", "sizes": ("auto", "1024x1024", "1536x1024", "1024x1536",
                                         "2048x2048", "2048x1152", "1152x2048", "3840x2160",
                                         "2160x3840"),
        "custom_sizes": SizeRule(), "backgrounds": ("opaque", "auto"),
        "input_fidelities": ("high",), "default_input_fidelity": "high"}),
    # Easel's own ids: every size the embedded model renders well, all qualities and styles.
    "easel": FamilyRules(name="easel", sizes=("64x64", "128x128", "256x256", "512x512",
                                              "1024x1024"),
                         default_size="256x256",
                         qualities=("standard", "hd", "low", "medium", "high", "auto"),
                         default_quality="standard", styles=("vivid", "natural"),
                         streaming=True, output_formats=OUTPUT_FORMATS, backgrounds=BACKGROUNDS,
                         moderations=MODERATIONS, input_fidelities=("high", "low"),
                         max_images=16, response_meta=True),
}

# `quality` as a multiple of the pipeline's default step count (docs/api.md): a real difference
# in denoising work.  `auto` is the server's choice, which is `medium`.
QUALITY_STEPS: dict[Quality, float] = {"standard": 1.0, "auto": 1.0, "medium": 1.0, "low": 0.5,
                                       "high": 1.5, "hd": 2.0}
# For a pipeline with a scorer, `quality` is how many candidates are drawn and ranked (a multiple
# of the catalog entry's `best_of`; low draws one), at the pipeline's own step count: for the
# shapes model prompt fidelity grows with candidates and not with steps past the solver's
# convergence (models/shapes/MODEL_CARD.md).
QUALITY_BEST_OF: dict[Quality, float] = {"standard": 1.0, "auto": 1.0, "medium": 1.0, "low": 0.0,
                                         "high": 2.0, "hd": 2.0}
# What a response's `quality` reports (OpenAI's response enum has no standard/hd/auto).
QUALITY_REPORTED: dict[Quality, str] = {"standard": "medium", "auto": "medium", "hd": "high"}
# `style`: vivid keeps the pipeline's guidance; natural lowers it (less saturated, closer to data).
STYLE_GUIDANCE: dict[Style, float] = {"vivid": 1.0, "natural": 0.7}
# An edit's default image-to-image strength (how much of the source is redrawn), by
# `input_fidelity`: "whole" for an edit with no transparent pixel, "masked" inside the mask.
EDIT_STRENGTH: dict[Fidelity, dict[str, float]] = {"low": {"whole": 0.75, "masked": 1.0},
                                                   "high": {"whole": 0.5, "masked": 0.8}}


# Reference-image families (FLUX.2) have no strength: `input_fidelity` sets each reference's
# side relative to the render size, high keeping four times the image tokens (and detail) of low.
REFERENCE_SCALE: dict[Fidelity, float] = {"high": 1.0, "low": 0.5}


def edit_strength(fidelity: Fidelity, masked: bool) -> float:
    return EDIT_STRENGTH[fidelity]["masked" if masked else "whole"]
