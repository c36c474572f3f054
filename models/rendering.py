"""Run a resident pipeline for one job: per-image seeds, native-resolution render, upscaling.

Sizes above the pipeline's native resolution are rendered at native resolution (same aspect
ratio, multiples of 8) and upscaled with Lanczos resampling: a small model is only good at the
size it was trained at, and an upscale is honest about where the pixels came from.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from models.loading import LoadedPipeline


def render_dims(width: int, height: int, native: int) -> tuple[int, int]:
    """The size the pipeline renders at for a requested output size."""
    scale = min(1.0, native / max(width, height))
    return (max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8))


def _generators(seeds: list[int], device: str) -> list[Any]:
    import torch

    # One generator per image: an image's pixels depend on its seed only, batched or not.
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds]


def _fit(images: list[Image.Image], width: int, height: int) -> list[Image.Image]:
    return [im if im.size == (width, height) else
            im.resize((width, height), Image.Resampling.LANCZOS) for im in images]


def generate(loaded: LoadedPipeline, prompt: str, negative_prompt: str | None, seeds: list[int],
             steps: int, guidance: float, width: int, height: int) -> list[Image.Image]:
    w, h = render_dims(width, height, loaded.spec.native_size)
    n = len(seeds)
    out = loaded.text2img(
        prompt=[prompt] * n, negative_prompt=[negative_prompt] * n if negative_prompt else None,
        num_inference_steps=steps, guidance_scale=guidance, width=w, height=h,
        generator=_generators(seeds, "cpu"), output_type="pil")
    return _fit(list(out.images), width, height)
