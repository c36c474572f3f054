"""The model catalog: public model ids, their API family's rules, and the pipelines behind them.

A *pipeline* is a diffusers folder a worker loads (one RQ queue each); a *model* is a public id
clients send (`dall-e-2`, `dall-e-3`, `easel-shapes`, ...) that names a pipeline and the OpenAI
family whose rules (core/rules.py) it follows.  Loaded from TOML (`EASEL_MODELS_FILE`) or the
built-in default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.rules import FAMILIES, FamilyRules


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
    family: FamilyRules
    description: str = ""
    created: int = 1764115200  # 2025-11-26, shown in /v1/models


@dataclass(frozen=True)
class Catalog:
    pipelines: dict[str, PipelineSpec]
    models: dict[str, ModelSpec] = field(default_factory=dict)
    default: str = ""  # the model of a request that names none (EASEL_DEFAULT_MODEL)

    def model(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    def default_model(self) -> ModelSpec:
        """EASEL_DEFAULT_MODEL, else OpenAI's default (dall-e-2) if served, else the first."""
        name = self.default or ("dall-e-2" if "dall-e-2" in self.models else "")
        return self.models[name] if name else next(iter(self.models.values()))

    def with_default(self, model_id: str) -> Catalog:
        if model_id and model_id not in self.models:
            raise ValueError(f"EASEL_DEFAULT_MODEL={model_id!r} is not in the model catalog")
        return replace(self, default=model_id)

    def pipeline_of(self, model: ModelSpec) -> PipelineSpec:
        return self.pipelines[model.pipeline]

    def rules_of(self, model: ModelSpec) -> FamilyRules:
        """The family's rules as this model's pipeline can keep them: the one set that
        validation, the OpenAPI document, /v1/models and the playground all use."""
        if self.pipeline_of(model).transparency:
            return model.family
        backgrounds = tuple(b for b in model.family.backgrounds if b != "transparent")
        return model.family.model_copy(update={"backgrounds": backgrounds})


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

[[models]]
id = "gpt-image-2"
pipeline = "shapes"
family = "gpt-image-2"
description = "alias of easel-shapes with gpt-image-2 rules (any WxH in multiples of 16)"

[[models]]
id = "chatgpt-image-latest"
pipeline = "shapes"
family = "gpt-image-2"
description = "alias of easel-shapes with gpt-image-2 rules (the newest OpenAI image model)"
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
