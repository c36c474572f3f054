"""Load a catalog pipeline once and derive its image-to-image and inpainting twins from it.

`from_pipe` shares the same modules (no second copy of the weights), so one resident model serves
generations, variations and edits.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.catalog import PipelineSpec
from models.checks import CheckpointError, absent_components, check_source
from models.families import ModelFamily, family_of, loader_kwargs

log = logging.getLogger("easel.models")
EMBEDDED = {"shapes": Path(__file__).resolve().parent / "shapes" / "weights",
            # The LoRA adapter trained for it (models/shapes/train_lora.py).
            "shapes-outline": (Path(__file__).resolve().parent / "shapes" / "adapters"
                               / "outline.safetensors"),
            # Its contrastive scorer (a small CLIP) for best-of-k (models/shapes/train_scorer.py).
            "shapes-scorer": Path(__file__).resolve().parent / "shapes" / "scorer"}


def resolve_path(path: str) -> str:
    """An absolute local folder for `embedded:<name>` and existing paths; else a Hub id.

    A relative folder that does not exist would fall through to a Hub lookup, so paths are made
    absolute first; Hub ids load only from the local cache (HF_HUB_OFFLINE, set by the worker).
    """
    if path.startswith("embedded:"):
        return str(EMBEDDED[path.split(":", 1)[1]])
    local = Path(path).expanduser()
    if local.exists():
        return str(local.resolve())
    if path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"pipeline folder {path} does not exist (relative paths are "
                                "relative to the catalog file)")
    return path


@dataclass
class LoadedPipeline:
    spec: PipelineSpec
    text2img: Any
    load_seconds: float
    family: ModelFamily
    _derived: dict[str, Any] = field(default_factory=dict)
    # diffusers pipelines are not thread-safe, and the derived twins share the same modules:
    # every call into any of them holds this lock (models.rendering), whichever thread calls.
    # Reentrant: `use_scheduler` holds it around the rendering calls that take it again.
    lock: Any = field(default_factory=threading.RLock, repr=False)
    _schedulers: dict[str, Any] = field(default_factory=dict, repr=False)
    adapters: Any = field(default=None, repr=False)  # models.adapters.AdapterCache, or None
    scorer: Any = field(default=None, repr=False)  # models.scoring.Scorer (catalog `scorer`)
    autocast: bool = False  # render under CPU bfloat16 autocast (Tuning.cpu_autocast)

    def __post_init__(self) -> None:
        self.default_scheduler = self.text2img.scheduler  # the checkpoint's own

    def _derive(self, kind: str) -> Any:
        if kind not in self._derived:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            cls = AutoPipelineForImage2Image if kind == "img2img" else AutoPipelineForInpainting
            pipe = cls.from_pipe(self.text2img, scheduler=self.default_scheduler)
            pipe.set_progress_bar_config(disable=True)
            pipe.scheduler = self.text2img.scheduler  # the one in use (use_scheduler)
            self._derived[kind] = pipe
        return self._derived[kind]

    def scheduler(self, name: str) -> Any:
        """The sampler `name` (core.rules.SCHEDULERS) built from the checkpoint's own scheduler
        config: no weights are touched. ValueError when it does not fit the pipeline."""
        if name not in self._schedulers:
            import diffusers

            from core.rules import SCHEDULER_CLASSES

            class_name, overrides = SCHEDULER_CLASSES[name]  # type: ignore[index]
            cls = getattr(diffusers, class_name)
            own = self.default_scheduler
            if cls is not type(own) and cls not in own.compatibles:
                raise ValueError(f"scheduler {name!r} does not fit pipeline {self.spec.name} "
                                 f"({type(self.text2img).__name__}); set `schedulers` in its "
                                 "catalog entry to the ones it takes ([] for SD3 and FLUX)")
            self._schedulers[name] = cls.from_config(own.config, **overrides)
        return self._schedulers[name]

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Hold the pipeline for one rendering call, under bfloat16 autocast when tuned so."""
        with self.lock:
            if not self.autocast:
                yield
                return
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                yield

    @contextlib.contextmanager
    def use_scheduler(self, name: str | None) -> Iterator[None]:
        """Render with sampler `name` (None: the checkpoint's own), then put the own one back."""
        if not name:
            yield
            return
        with self.lock:
            chosen = self.scheduler(name)
            pipes = [self.text2img, *self._derived.values()]
            for pipe in pipes:
                pipe.scheduler = chosen
            try:
                yield
            finally:
                for pipe in [self.text2img, *self._derived.values()]:
                    pipe.scheduler = self.default_scheduler

    @contextlib.contextmanager
    def use_adapters(self, loras: Sequence[tuple[str, float]]) -> Iterator[None]:
        """Render with exactly these LoRA adapters (none: the base weights alone); every
        rendering call sets its own, so nothing needs putting back."""
        if self.adapters is None:
            if loras:
                raise RuntimeError(f"pipeline {self.spec.name} has no adapters loaded")
            yield
            return
        with self.lock:
            self.adapters.activate(loras)
            yield

    def attach_adapters(self, specs: Sequence[Any], budget_bytes: int) -> None:
        """Give the pipeline its catalog adapters (core.adapters), preloaded within budget."""
        if specs:
            from models.adapters import AdapterCache

            self.adapters = AdapterCache(self.text2img, specs, budget_bytes, resolve_path,
                                         self.spec.name)
            with self.lock:
                self.adapters.preload()

    def weight_bytes(self) -> int:
        """Memory the pipeline's weights take (the derived pipelines share them), its scorer's
        included."""
        total = 0
        extra = [self.scorer.model] if self.scorer is not None else []
        for component in [*self.text2img.components.values(), *extra]:
            params = getattr(component, "parameters", None)
            if callable(params):
                total += sum(p.numel() * p.element_size() for p in params())
        return total

    @property
    def size_multiple(self) -> int:
        """Render widths and heights are multiples of this (8 at least, as always)."""
        return max(8, self.family.size_multiple(self.text2img))

    @property
    def img2img(self) -> Any:
        return self._derive("img2img")

    @property
    def inpaint(self) -> Any:
        return self._derive("inpaint")


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@dataclass(frozen=True)
class Tuning:
    """Speed settings for GPUs (attention is already PyTorch SDPA in current diffusers)."""

    channels_last: bool = False
    compile: bool = False
    vae_tiling: bool = False  # decode large images tile by tile: less memory, same output
    vae_slicing: bool = False  # decode a batch one image at a time
    cpu_offload: bool = False  # keep modules on the CPU until used: small cards
    # CPU only: run float32 weights under bfloat16 autocast where the CPU computes bfloat16
    # natively (avx512_bf16, AMX): 1.3-1.6x faster on a small UNet; elsewhere it is slower.
    cpu_autocast: bool = False


def cpu_has_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _tune(pipe: Any, device: str, tuning: Tuning) -> Any:
    import torch

    if tuning.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()  # moves modules itself: no .to(device)
    else:
        pipe = pipe.to(device)
    denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"  # SD3/FLUX
    if tuning.channels_last:
        getattr(pipe, denoiser).to(memory_format=torch.channels_last)
    if tuning.vae_tiling:
        pipe.vae.enable_tiling()
    if tuning.vae_slicing:
        pipe.vae.enable_slicing()
    if tuning.compile:
        setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser), mode="reduce-overhead",
                                              fullgraph=False))
    return pipe


def load_pipeline(spec: PipelineSpec, device: str = "cpu", dtype: str = "float32",
                  tuning: Tuning | None = None) -> LoadedPipeline:
    t0 = time.perf_counter()
    source = resolve_path(spec.path)
    # A mistaken checkpoint is named before any weights load.
    check_source(spec.path, source, spec.config)
    import diffusers

    # An explicit dtype: fp16-saved weights loaded without one mix fp16 and fp32 modules.
    if Path(source).is_file():  # one .safetensors: components built from the config folder
        config = str(Path(spec.config).expanduser().resolve())
        cls = getattr(diffusers, diffusers.DiffusionPipeline.load_config(config)["_class_name"])
        # What the file lacks (a FLUX.1 file's VAE and text encoders) loads from the config
        # folder's weights: diffusers alone would look for the VAE in the file only.
        lacking = {name: getattr(importlib.import_module(library), class_name).from_pretrained(
            config, subfolder=name, dtype=torch_dtype(dtype), local_files_only=True)
            for name, (library, class_name) in absent_components(Path(source), config).items()}
        pipe = cls.from_single_file(source, config=config, local_files_only=True,
                                    torch_dtype=torch_dtype(dtype), **loader_kwargs(config),
                                    **lacking)
    else:
        pipe = diffusers.AutoPipelineForText2Image.from_pretrained(
            source, dtype=torch_dtype(dtype), **loader_kwargs(source))
    pipe = _tune(pipe, device, tuning or Tuning())
    pipe.set_progress_bar_config(disable=True)
    seconds = time.perf_counter() - t0
    family = family_of(pipe)
    if bool(spec.reference_images) != family.references:
        raise CheckpointError(
            f"pipeline {spec.name}: {type(pipe).__name__} "
            + ("draws from reference images: set reference_images (1 to 16, e.g. 4) in its "
               "catalog entry" if family.references else
               "edits from one image (image-to-image, inpainting): remove reference_images "
               "from its catalog entry"))
    if spec.guided_fraction < 1 and not family.can_end_guidance(pipe):
        raise CheckpointError(
            f"pipeline {spec.name}: {type(pipe).__name__} cannot end classifier-free guidance "
            "part-way (only SD 1.x/2.x and SDXL pipelines can): remove guided_fraction from its "
            "catalog entry")
    log.info("loaded pipeline %s (%s) from %s in %.2fs", spec.name, family.name, source, seconds)
    tuning = tuning or Tuning()
    loaded = LoadedPipeline(spec, pipe, seconds, family,
                            autocast=tuning.cpu_autocast and device == "cpu" and dtype == "float32"
                            and cpu_has_bf16())
    if spec.scorer:  # best_of: the candidates' judge, beside the pipeline on the same device
        from models.scoring import Scorer

        loaded.scorer = Scorer(resolve_path(spec.scorer), device)
    misfits = []
    for name in spec.schedulers:
        try:
            loaded.scheduler(name)
        except ValueError:
            misfits.append(name)
    if misfits:  # requests for them fail; the catalog entry should not offer them
        log.warning("pipeline %s (%s) cannot sample with %s: set `schedulers` in its catalog "
                    "entry (docs/models.md)", spec.name, type(pipe).__name__, ", ".join(misfits))
    return loaded
