"""What runs between a pipeline's denoising steps: streamed previews, and the end of
classifier-free guidance part-way through the run (a pipeline's `guided_fraction`).

diffusers takes one `callback_on_step_end`; every rendering call (text-to-image, image-to-image,
inpainting, reference images) gets both jobs from `step_kwargs`, over the steps that actually run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from models.loading import LoadedPipeline

OnPartial = Callable[[int, Image.Image], None]
# Picks which of a call's images a preview shows (best-of-k: the candidate leading so far).
Lead = Callable[[list[Image.Image]], int]
Callback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def preview_steps(steps: int, partials: int) -> list[int]:
    """The 0-based steps after which a preview is decoded: evenly spaced, never the same step
    twice, so `partials` previews come even when there are barely more steps than that."""
    at: list[int] = []
    for k in range(1, partials + 1):
        step = max(0, round(k * steps / (partials + 1)) - 1, at[-1] + 1 if at else 0)
        if step < steps:
            at.append(step)
    return at


def guided_steps(steps: int, fraction: float) -> int:
    """How many of `steps` steps use classifier-free guidance: the first `fraction` of them,
    at least one."""
    return max(1, round(fraction * steps))


def _stop_guidance(pipe: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """From the next step on, only the conditional branch runs: half the denoiser's batch.
    diffusers reads `do_classifier_free_guidance` from `_guidance_scale` every step."""
    pipe._guidance_scale = 1.0
    return {name: t.chunk(2)[1] if t is not None else None for name, t in tensors.items()}


def _previews(loaded: LoadedPipeline, steps: int, partials: int, on_partial: OnPartial,
              width: int, height: int, render: tuple[int, int], lead: Lead | None) -> Callback:
    at = preview_steps(steps, partials)
    sent = 0

    def preview(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal sent
        if step in at and sent < partials:
            latents = kwargs["latents"] if lead else kwargs["latents"][:1]
            decoded = loaded.family.decode(pipe, latents, *render)
            shown = pipe.image_processor.postprocess(decoded, output_type="pil")
            image = shown[lead(shown)] if lead else shown[0]
            on_partial(sent, image.resize((width, height), Image.Resampling.LANCZOS))
            sent += 1
        return {}

    return preview


def step_kwargs(loaded: LoadedPipeline, pipe: Any, steps: int, guidance: float,
                partials: int = 0, on_partial: OnPartial | None = None, width: int = 0,
                height: int = 0, render: tuple[int, int] = (0, 0),
                lead: Lead | None = None) -> dict[str, Any]:
    """The `callback_on_step_end` arguments for one call of `pipe` running `steps` steps.

    Previews: `partials` decodes of the first image's latents at evenly spaced steps, sent at
    `width` x `height` (`render`: the size the pipeline renders); with `lead`, every image is
    decoded and the one `lead` picks is shown.  Guidance: with a pipeline `guided_fraction`
    below 1 and guidance on, the steps after the first `guided_fraction` run unguided."""
    jobs: list[Callback] = []
    inputs = ["latents"]
    if partials and on_partial is not None:
        jobs.append(_previews(loaded, steps, partials, on_partial, width, height, render, lead))
    guided = guided_steps(steps, loaded.spec.guided_fraction)
    if guidance > 1 and guided < steps:
        doubled = loaded.family.doubled_tensors(pipe)
        inputs += doubled

        def stop(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if step + 1 != guided or not pipe.do_classifier_free_guidance:
                return {}
            return _stop_guidance(pipe, {name: kwargs[name] for name in doubled})

        jobs.append(stop)
    if not jobs:
        return {}

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        for job in jobs:
            kwargs = {**kwargs, **job(pipe, step, timestep, kwargs)}
        return kwargs

    return {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": inputs}
