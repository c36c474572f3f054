"""The model catalog: public model ids, their API family's rules, and the pipelines behind them.

A *pipeline* is a diffusers folder a worker loads (one RQ queue each); a *model* is a public id
clients send (`dall-e-2`, `dall-e-3`, `easel-shapes`, ...) that names a pipeline and the OpenAI
family whose rules it follows.  Loaded from TOML (`EASEL_MODELS_FILE`) or the built-in default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Family:
    """Validation rules of one OpenAI model family (the legacy contract, see docs/api.md)."""

    name: str
    sizes: tuple[str, ...]
    default_size: str
    max_n: int
    qualities: tuple[str, ...]
    default_quality: str
    styles: tuple[str, ...]
    max_prompt: int
    response_formats: tuple[str, ...] = ("url", "b64_json")
    default_response_format: str = "url"
    kinds: tuple[str, ...] = ("generate", "edit", "variation")  # endpoints the family offers
    streaming: bool = False  # `stream: true` with partial images (gpt-image and Easel's ids)
    gpt_fields: bool = False  # background/output_format/... accepted and echoed in responses


FAMILIES: dict[str, Family] = {
    "dall-e-2": Family("dall-e-2", ("256x256", "512x512", "1024x1024"), "1024x1024", 10,
                       ("standard", "auto"), "standard", (), 1000),
    "dall-e-3": Family("dall-e-3", ("1024x1024", "1792x1024", "1024x1792"), "1024x1024", 1,
                       ("standard", "hd", "auto"), "standard", ("vivid", "natural"), 4000,
                       kinds=("generate",)),
    "gpt-image": Family("gpt-image", ("auto", "1024x1024", "1536x1024", "1024x1536"), "auto", 10,
                        ("low", "medium", "high", "auto"), "auto", (), 32000,
                        ("b64_json",), "b64_json", ("generate", "edit"), True, True),
    # Easel's own ids: every size the embedded model renders well, n up to 10, all styles.
    "easel": Family("easel", ("64x64", "128x128", "256x256", "512x512", "1024x1024"),
                    "256x256", 10, ("standard", "hd", "low", "medium", "high", "auto"),
                    "standard", ("vivid", "natural"), 4000, streaming=True, gpt_fields=True),
}

# Documented mapping of `quality` to a multiple of the pipeline's default step count.
QUALITY_STEPS = {"standard": 1.0, "auto": 1.0, "medium": 1.0, "low": 0.5, "high": 1.5, "hd": 2.0}
# `style`: vivid keeps the pipeline's guidance; natural lowers it (less saturated, closer to data).
STYLE_GUIDANCE = {"vivid": 1.0, "natural": 0.7}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    path: str  # a local folder, a Hub id (with weights pre-downloaded), or "embedded:shapes"
    native_size: int = 512
    steps: int = 30
    guidance: float = 7.5
    max_steps: int = 150
    strength: float = 0.6  # image-to-image strength used for variations
    # How `background: transparent` is honoured: "white-key" turns the white canvas of a
    # plain-background model into alpha; "" means the pipeline cannot and the request gets a 400.
    transparency: str = ""

    @property
    def queue(self) -> str:
        return f"easel:{self.name}"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    pipeline: str
    family: Family
    description: str = ""
    created: int = 1764115200  # 2025-11-26, shown in /v1/models


@dataclass(frozen=True)
class Catalog:
    pipelines: dict[str, PipelineSpec]
    models: dict[str, ModelSpec] = field(default_factory=dict)

    def model(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    def pipeline_of(self, model: ModelSpec) -> PipelineSpec:
        return self.pipelines[model.pipeline]


DEFAULT_CATALOG_TOML = """
# The embedded default model, served under its own id and the dall-e aliases.
[pipelines.shapes]
path = "embedded:shapes"
native_size = 64
steps = 20
guidance = 5.0
max_steps = 100
strength = 0.6
transparency = "white-key"

[[models]]
id = "easel-shapes"
pipeline = "shapes"
family = "easel"
description = "Easel's embedded shapes-world model (64 px native, upscaled above)"

[[models]]
id = "dall-e-2"
pipeline = "shapes"
family = "dall-e-2"
description = "alias of easel-shapes with dall-e-2 rules"

[[models]]
id = "dall-e-3"
pipeline = "shapes"
family = "dall-e-3"
description = "alias of easel-shapes with dall-e-3 rules"

[[models]]
id = "gpt-image-1"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"

[[models]]
id = "gpt-image-1.5"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"

[[models]]
id = "gpt-image-1-mini"
pipeline = "shapes"
family = "gpt-image"
description = "alias of easel-shapes with gpt-image rules (b64_json, streaming)"
"""


def parse_catalog(data: dict[str, Any], base: Path | None = None) -> Catalog:
    pipelines: dict[str, PipelineSpec] = {}
    for name, raw in data.get("pipelines", {}).items():
        path = str(raw["path"])
        if base is not None and not path.startswith("embedded:") and path.startswith("."):
            path = str((base / path).resolve())  # relative paths are relative to the file
        pipelines[name] = PipelineSpec(name=name, **{**raw, "path": path})
    models: dict[str, ModelSpec] = {}
    for raw in data.get("models", []):
        family = FAMILIES.get(raw.get("family", "easel"))
        if family is None:
            raise ValueError(f"model {raw['id']}: unknown family {raw.get('family')!r}")
        if raw["pipeline"] not in pipelines:
            raise ValueError(f"model {raw['id']}: unknown pipeline {raw['pipeline']!r}")
        models[raw["id"]] = ModelSpec(raw["id"], raw["pipeline"], family,
                                      raw.get("description", ""))
    if not models:
        raise ValueError("the model catalog defines no models")
    return Catalog(pipelines, models)


def load_catalog(path: Path | None) -> Catalog:
    """The catalog from a TOML file, or the built-in default when `path` is None."""
    if path is None:
        return parse_catalog(tomllib.loads(DEFAULT_CATALOG_TOML))
    return parse_catalog(tomllib.loads(path.read_text()), path.parent)
