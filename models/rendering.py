"""Run a resident pipeline for one job: per-image seeds, native-resolution render, upscaling.

Sizes above the pipeline's native resolution are rendered at native resolution (same aspect
ratio, multiples of 8, or of 16 for SD3 and FLUX) and upscaled with Lanczos resampling: a small
model is only good at the size it was trained at, and an upscale is honest about where the pixels
came from.  Family differences (SD 1.x/2.x, SDXL, SD3, FLUX) live in `models.families`.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from core.rules import REFERENCE_SCALE, Fidelity, edit_strength
from models.loading import LoadedPipeline
from models.step_callbacks import Lead, OnPartial, step_kwargs


def render_dims(width: int, height: int, native: int, multiple: int = 8) -> tuple[int, int]:
    """The size the pipeline renders at for a requested output size."""
    scale = min(1.0, native / max(width, height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def _dims(loaded: LoadedPipeline, width: int, height: int) -> tuple[int, int]:
    return render_dims(width, height, loaded.spec.native_size, loaded.size_multiple)


def _generators(seeds: list[int], device: str) -> list[Any]:
    import torch

    # One generator per image: an image's pixels depend on its seed only, batched or not.
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds]


def fit_all(images: list[Image.Image], width: int, height: int) -> list[Image.Image]:
    return [im if im.size == (width, height) else
            im.resize((width, height), Image.Resampling.LANCZOS) for im in images]


def generate(loaded: LoadedPipeline, prompt: str, negative_prompt: str | None, seeds: list[int],
             steps: int, guidance: float, width: int, height: int) -> list[Image.Image]:
    return generate_prompts(loaded, [prompt] * len(seeds), negative_prompt, seeds, steps,
                            guidance, width, height)


def _prompts(loaded: LoadedPipeline, prompts: list[str],
             negative_prompt: str | None) -> dict[str, Any]:
    """`prompt` and, where the family takes one, `negative_prompt` (FLUX does not)."""
    if negative_prompt and loaded.family.negative_prompt:
        return {"prompt": prompts, "negative_prompt": [negative_prompt] * len(prompts)}
    return {"prompt": prompts}


def generate_prompts(loaded: LoadedPipeline, prompts: list[str], negative_prompt: str | None,
                     seeds: list[int], steps: int, guidance: float, width: int, height: int,
                     partials: int = 0, on_partial: OnPartial | None = None, *,
                     fit: bool = True, lead: Lead | None = None) -> list[Image.Image]:
    """One pipeline call for several prompts (a cross-request batch), one seed per image.
    `fit=False`: the images at the render size, not yet resized to width x height."""
    w, h = _dims(loaded, width, height)
    with loaded.running():
        out = loaded.text2img(
            **_prompts(loaded, prompts, negative_prompt),
            num_inference_steps=steps, guidance_scale=guidance, width=w, height=h,
            generator=_generators(seeds, "cpu"), output_type="pil",
            **step_kwargs(loaded, loaded.text2img, steps, guidance, partials, on_partial, width,
                          height, (w, h), lead))
    return fit_all(list(out.images), width, height) if fit else list(out.images)


def _img2img_steps(steps: int, strength: float) -> int:
    """Image-to-image runs the last `strength` of a `steps`-step schedule (int(steps x strength)
    steps in SD/SDXL): ask for enough steps that at least one of them runs."""
    return max(steps, math.ceil(1 / strength))


def _flatten(image: Image.Image) -> Image.Image:
    """RGB over white: transparent pixels carry arbitrary colour, and white is the world's
    background, so outpainted borders start from the right canvas."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def edit_weight(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """Per-pixel edit weight as an 'L' image: 255 where the mask (or the image) is transparent."""
    source = mask if mask is not None else image
    alpha = source.convert("RGBA").getchannel("A")
    return alpha.point(lambda a: 255 - a)


def _paste_back(generated: list[Image.Image], original: Image.Image,
                weight: Image.Image) -> list[Image.Image]:
    """Keep every pixel outside the mask from the original; blend a soft seam just inside it.

    The seam is weight x blur(weight): zero outside the mask (pixels there are the original's),
    one deep inside, and a ramp along the border so the new content meets the old without a cut.
    """
    from PIL import ImageChops, ImageFilter

    size = generated[0].size
    base = original.resize(size, Image.Resampling.LANCZOS)
    w = weight.resize(size, Image.Resampling.BILINEAR)
    radius = max(1.0, 0.015 * max(size))
    soft = ImageChops.multiply(w, w.filter(ImageFilter.GaussianBlur(radius)))
    return [Image.composite(g, base, soft) for g in generated]


def edit(loaded: LoadedPipeline, prompt: str, negative_prompt: str | None, seeds: list[int],
         steps: int, guidance: float, width: int, height: int, images: list[Image.Image],
         mask: Image.Image | None, strength: float | None, partials: int = 0,
         on_partial: OnPartial | None = None, fidelity: Fidelity = "low") -> list[Image.Image]:
    """Inpaint the transparent area (of the mask, else of the first image); outside stays as it
    was.

    With no transparent pixel at all the whole image is redrawn image-to-image.  Without an
    explicit `strength`, `fidelity` (OpenAI's input_fidelity) sets how much of the source
    survives: core.rules.EDIT_STRENGTH.  Reference-image families (FLUX.2) draw from every
    image instead: `with_references`.
    """
    if loaded.family.references:
        return with_references(loaded, prompt, negative_prompt, seeds, steps, guidance, width,
                               height, images, mask, partials, on_partial, fidelity)
    image = images[0]
    weight = edit_weight(image, mask)
    flat = _flatten(image)
    w, h = _dims(loaded, width, height)
    n = len(seeds)
    common = dict(**_prompts(loaded, [prompt] * n, negative_prompt), guidance_scale=guidance,
                  generator=_generators(seeds, "cpu"), output_type="pil")
    masked = weight.getextrema()[1] != 0  # any transparent pixel at all
    strength = strength or edit_strength(fidelity, masked)
    if not masked:
        return _img2img(loaded, flat, w, h, steps, strength, common, width, height, partials,
                        on_partial)
    # Any partly transparent pixel joins the area the pipeline redraws (max-pool the weight).
    small = weight.resize((w, h), Image.Resampling.BOX).point(lambda a: 255 if a > 8 else 0)
    steps = _img2img_steps(steps, strength)
    callbacks = step_kwargs(loaded, loaded.inpaint, max(1, int(steps * strength)), guidance,
                            partials, on_partial, width, height, (w, h))  # steps that run
    with loaded.running():
        out = loaded.inpaint(image=flat.resize((w, h), Image.Resampling.LANCZOS),
                             mask_image=small, width=w, height=h, strength=strength,
                             num_inference_steps=steps, **common, **callbacks)
    return _paste_back(fit_all(list(out.images), width, height), flat, weight)


def _img2img(loaded: LoadedPipeline, flat: Image.Image, w: int, h: int, steps: int,
             strength: float, common: dict[str, Any], width: int, height: int,
             partials: int = 0, on_partial: OnPartial | None = None) -> list[Image.Image]:
    """Image-to-image from `flat` at the render size, one copy of the image per seed (SD3's
    pipeline does not repeat a single image for a list of generators)."""
    n = len(common["generator"])
    source = flat.resize((w, h), Image.Resampling.LANCZOS)
    size = {"width": w, "height": h} if loaded.family.img2img_size else {}
    steps = _img2img_steps(steps, strength)
    callbacks = step_kwargs(loaded, loaded.img2img, max(1, int(steps * strength)),
                            common["guidance_scale"], partials, on_partial, width, height,
                            (w, h))  # over the steps that actually run
    with loaded.running():
        out = loaded.img2img(image=[source] * n, strength=strength, num_inference_steps=steps,
                             **size, **common, **callbacks)
    return fit_all(list(out.images), width, height)


# FLUX.2's image processor refuses references under 64 px a side or beyond 8:1.
REFERENCE_MIN_SIDE, REFERENCE_MAX_RATIO = 64, 8


def _reference(image: Image.Image, fidelity: Fidelity, render: tuple[int, int],
               multiple: int) -> Image.Image:
    """A reference image at the render size's area times REFERENCE_SCALE[fidelity]: high
    fidelity keeps four times the image tokens of low, and with them the source's detail.
    Extreme shapes are padded with white (the world's background) to what the pipeline takes."""
    flat = _flatten(image)
    w, h = flat.size
    if max(w, h) > REFERENCE_MAX_RATIO * min(w, h):
        side = -(-max(w, h) // REFERENCE_MAX_RATIO)
        canvas = Image.new("RGB", (max(w, side), max(h, side)), (255, 255, 255))
        canvas.paste(flat, ((canvas.width - w) // 2, (canvas.height - h) // 2))
        flat, (w, h) = canvas, canvas.size
    scale = REFERENCE_SCALE[fidelity] * math.sqrt(render[0] * render[1] / (w * h))
    scale = max(scale, REFERENCE_MIN_SIDE / min(w, h))
    size = [max(multiple, math.ceil(side * scale / multiple) * multiple) for side in (w, h)]
    return flat.resize((size[0], size[1]), Image.Resampling.LANCZOS)


def with_references(loaded: LoadedPipeline, prompt: str, negative_prompt: str | None,
                    seeds: list[int], steps: int, guidance: float, width: int, height: int,
                    images: list[Image.Image], mask: Image.Image | None, partials: int = 0,
                    on_partial: OnPartial | None = None,
                    fidelity: Fidelity = "high") -> list[Image.Image]:
    """One text-to-image call conditioned on every image (FLUX.2's multi-reference `image`);
    pixels outside a mask (or the first image's own transparent area) are kept from it."""
    w, h = _dims(loaded, width, height)
    refs = [_reference(im, fidelity, (w, h), loaded.size_multiple) for im in images]
    n = len(seeds)
    with loaded.running():
        out = loaded.text2img(
            image=refs, **_prompts(loaded, [prompt] * n, negative_prompt),
            num_inference_steps=steps, guidance_scale=guidance, width=w, height=h,
            generator=_generators(seeds, "cpu"), output_type="pil",
            **step_kwargs(loaded, loaded.text2img, steps, guidance, partials, on_partial, width,
                          height, (w, h)))
    drawn = fit_all(list(out.images), width, height)
    weight = edit_weight(images[0], mask)
    low, high = weight.getextrema()
    if high == 0 or low == 255:  # no area marked, or all of it: the whole image is new
        return drawn
    return _paste_back(drawn, _flatten(images[0]), weight)


def vary(loaded: LoadedPipeline, seeds: list[int], steps: int, guidance: float, width: int,
         height: int, image: Image.Image, strength: float | None) -> list[Image.Image]:
    """Image-to-image from the input at `strength` (default 0.6): like it, but not identical.
    Reference-image families draw a new picture from the input as their one reference."""
    if loaded.family.references:
        return with_references(loaded, "", None, seeds, steps, guidance, width, height, [image],
                               None)
    assert strength is not None
    w, h = _dims(loaded, width, height)
    common = dict(prompt=[""] * len(seeds), guidance_scale=guidance,
                  generator=_generators(seeds, "cpu"), output_type="pil")
    return _img2img(loaded, _flatten(image), w, h, steps, strength, common, width, height)
