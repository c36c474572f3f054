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

from core.adapters import AdapterSpec, parse_adapters
from core.catalog_schema import check_keys, relative
from core.default_catalog import DEFAULT_CATALOG_TOML
from core.rules import FAMILIES, MAX_BEST_OF, SCHEDULERS, FamilyRules


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
    # A single-file checkpoint's component configs and tokenizers: a folder in the diffusers
    # layout (model_index.json, */config.json, tokenizers; weights not needed). Never a hub.
    config: str = ""
    # The samplers requests may choose (`scheduler`): [] for SD3/FLUX, which have one.
    schedulers: tuple[str, ...] = SCHEDULERS
    # 0: edits and variations start from the first image (image-to-image, inpainting). N: the
    # pipeline conditions on up to N reference images at once (FLUX.2), and every image a
    # request sends is used.
    reference_images: int = 0
    # A contrastive image-text scorer (a CLIPModel folder, or "embedded:shapes-scorer") that
    # ranks candidates against the prompt: requests may then ask for `best_of`, and `best_of`
    # here is how many candidates an image gets by default (core.rules.QUALITY_BEST_OF).
    scorer: str = ""
    best_of: int = 1
    # The share of a call's denoising steps, from the first, that use classifier-free guidance;
    # the rest run the conditional branch alone at half the cost.  Guidance matters most while
    # the picture's layout forms (models/shapes/MODEL_CARD.md measures it).  1: every step.
    guided_fraction: float = 1.0

    @property
    def images_used(self) -> int:
        """How many of an edit's images this pipeline draws from."""
        return max(1, self.reference_images)

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
    # EASEL_EXTRA_IMAGES: "refuse" edits with more images than the pipeline uses; "first"
    # accepts up to the family's limit and renders from the first ones.
    extra_images: str = "refuse"
    adapters: dict[str, AdapterSpec] = field(default_factory=dict)  # LoRA files: core/adapters
    # rules_of's answers by model id (every request asks; the catalog never changes).
    _rules: dict[str, FamilyRules] = field(default_factory=dict, init=False, compare=False,
                                           repr=False)

    def model(self, model_id: str) -> ModelSpec | None:
        return self.models.get(model_id)

    def default_model(self) -> ModelSpec:
        """EASEL_DEFAULT_MODEL, else OpenAI's default (dall-e-2) if served, else the first."""
        name = self.default or ("dall-e-2" if "dall-e-2" in self.models else "")
        return self.models[name] if name else next(iter(self.models.values()))

    def with_default(self, model_id: str) -> Catalog:
        if model_id and model_id not in self.models:
            raise CatalogError(f"EASEL_DEFAULT_MODEL={model_id!r} is not in the model catalog; "
                               f"it has: {', '.join(self.models)}")
        return replace(self, default=model_id)

    def with_extra_images(self, policy: str) -> Catalog:
        return replace(self, extra_images=policy)

    def pipeline_of(self, model: ModelSpec) -> PipelineSpec:
        return self.pipelines[model.pipeline]

    def adapters_of(self, pipeline: str) -> list[AdapterSpec]:
        """The LoRA adapters requests for this pipeline's models may name (`loras`)."""
        return [a for a in self.adapters.values() if pipeline in a.pipelines]

    def rules_of(self, model: ModelSpec) -> FamilyRules:
        """The family's rules as this model's pipeline can keep them: the one set that
        validation, the OpenAPI document, /v1/models and the playground all use."""
        if self.models.get(model.id) is not model:  # a spec from elsewhere: not cached
            return self._derive_rules(model)
        if model.id not in self._rules:
            self._rules[model.id] = self._derive_rules(model)
        return self._rules[model.id]

    def _derive_rules(self, model: ModelSpec) -> FamilyRules:
        pipe, family = self.pipeline_of(model), model.family
        update: dict[str, Any] = {}
        if not pipe.transparency:
            update["backgrounds"] = tuple(b for b in family.backgrounds if b != "transparent")
        if self.extra_images == "refuse" and family.max_images > pipe.images_used:
            update["max_images"] = pipe.images_used  # never an image accepted and unused
        return family.model_copy(update=update) if update else family


class CatalogError(ValueError):
    """A mistake in the catalog, told in words: the file, the entry, and the fix."""


PIPELINE_KEYS: dict[str, type] = {"path": str, "native_size": int, "steps": int,
                                  "guidance": float, "max_steps": int, "strength": float,
                                  "transparency": str, "config": str, "schedulers": list,
                                  "reference_images": int, "scorer": str, "best_of": int,
                                  "guided_fraction": float}
MODEL_KEYS: dict[str, type] = {"id": str, "pipeline": str, "family": str, "description": str,
                               "created": int}
TRANSPARENCY = ("", "white-key")
MAX_REFERENCE_IMAGES = 16  # OpenAI's limit of images per edit


def _pipeline(name: str, raw: dict[str, Any], base: Path | None, where: str,
              errors: list[str]) -> PipelineSpec | None:
    if not check_keys(where, raw, PIPELINE_KEYS, ("path",), errors):
        return None
    unknown = [s for s in raw.get("schedulers", []) if s not in SCHEDULERS]
    if unknown:
        errors.append(f"{where}: unknown schedulers {unknown}; valid: {', '.join(SCHEDULERS)} "
                      "(or [] for none)")
    spec = PipelineSpec(name=name, **{**raw, "path": relative(raw["path"], base),
                                      "config": relative(raw.get("config", ""), base),
                                      "scorer": relative(raw.get("scorer", ""), base),
                                      "schedulers": tuple(raw.get("schedulers", SCHEDULERS))})
    for key in ("native_size", "steps", "max_steps"):
        if getattr(spec, key) < 1:
            errors.append(f"{where}: {key} must be at least 1, not {getattr(spec, key)}")
    if spec.steps > spec.max_steps:
        errors.append(f"{where}: steps ({spec.steps}) is above max_steps ({spec.max_steps})")
    if not 0 < spec.strength <= 1:
        errors.append(f"{where}: strength must be in (0, 1], not {spec.strength}")
    if not 0 <= spec.reference_images <= MAX_REFERENCE_IMAGES:
        errors.append(f"{where}: reference_images must be 0 (image-to-image from the first "
                      f"image) to {MAX_REFERENCE_IMAGES}, not {spec.reference_images}")
    if not 1 <= spec.best_of <= MAX_BEST_OF:
        errors.append(f"{where}: best_of must be 1 to {MAX_BEST_OF}, not {spec.best_of}")
    if not 0 < spec.guided_fraction <= 1:
        errors.append(f"{where}: guided_fraction must be in (0, 1], not {spec.guided_fraction}")
    if spec.best_of > 1 and not spec.scorer:
        errors.append(f"{where}: best_of {spec.best_of} needs a scorer to rank the candidates "
                      "(set scorer, or best_of = 1)")
    if spec.transparency not in TRANSPARENCY:
        errors.append(f"{where}: unknown transparency {spec.transparency!r}; valid: "
                      + ", ".join(repr(t) for t in TRANSPARENCY))
    return spec


def parse_catalog(data: dict[str, Any], base: Path | None = None,
                  source: str = "the built-in catalog") -> Catalog:
    """The catalog from parsed TOML, checked whole: every mistake is reported at once, each
    naming `source` (the file) and the entry, as a CatalogError."""
    errors: list[str] = []
    for key in data:
        if key not in ("pipelines", "models", "adapters"):
            errors.append(f"unknown top-level key {key!r}; valid: [pipelines.NAME], [[models]], "
                          "[adapters.NAME]")
    pipelines: dict[str, PipelineSpec] = {}
    raw_pipelines = data.get("pipelines", {})
    if not isinstance(raw_pipelines, dict):
        errors.append("pipelines must be tables: [pipelines.NAME]")
        raw_pipelines = {}
    folders: dict[str, str] = {}
    for name, raw in raw_pipelines.items():
        spec = _pipeline(name, raw, base, f"[pipelines.{name}]", errors)
        if spec is None:
            continue
        if not spec.path.startswith("embedded:"):
            if spec.path in folders:
                errors.append(f"[pipelines.{name}]: path {spec.path} is already pipeline "
                              f"{folders[spec.path]!r} (it would load twice); point several "
                              "[[models]] at one pipeline instead")
            folders.setdefault(spec.path, name)
        pipelines[name] = spec
    models: dict[str, ModelSpec] = {}
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list):
        errors.append("models must be an array of tables: [[models]]")
        raw_models = []
    for i, raw in enumerate(raw_models):
        where = f"[[models]] #{i + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            where += f" (id {raw['id']!r})"
        if not check_keys(where, raw, MODEL_KEYS, ("id", "pipeline"), errors):
            continue
        family = FAMILIES.get(raw.get("family", "easel"))
        if family is None:
            errors.append(f"{where}: unknown family {raw.get('family')!r}; valid: "
                          + ", ".join(FAMILIES))
        if raw["pipeline"] not in pipelines and raw["pipeline"] not in raw_pipelines:
            errors.append(f"{where}: unknown pipeline {raw['pipeline']!r}; the catalog has: "
                          + (", ".join(raw_pipelines) or "none"))
        if raw["id"] in models:
            errors.append(f"{where}: duplicate model id {raw['id']!r}; each id once")
        if family is not None and raw["pipeline"] in pipelines and raw["id"] not in models:
            models[raw["id"]] = ModelSpec(raw["id"], raw["pipeline"], family,
                                          raw.get("description", ""),
                                          raw.get("created", ModelSpec.created))
    if not raw_models:
        errors.append("the model catalog defines no models: add a [[models]] entry")
    adapters = parse_adapters(data.get("adapters", {}), raw_pipelines, base, errors)
    if errors:
        raise CatalogError(f"{source}: " + f"\n{source}: ".join(errors))
    return Catalog(pipelines, models, adapters=adapters)


def load_catalog(path: Path | None) -> Catalog:
    """The catalog from a TOML file, or the built-in default when `path` is None."""
    if path is None:
        return parse_catalog(tomllib.loads(DEFAULT_CATALOG_TOML))
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"model catalog {path}: cannot read it ({exc.strerror or exc}); "
                           "check EASEL_MODELS_FILE") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    return parse_catalog(data, path.parent, str(path))
