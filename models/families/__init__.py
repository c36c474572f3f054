"""What differs between the diffusers pipeline families Easel serves, in one small table.

Loading, rendering and previews are the same code for every family; a `ModelFamily` holds the
few facts where they differ: the size multiple it renders at, how its latents decode into a
preview, and whether it takes a negative prompt.
Not to be confused with `core.catalog.Family`, the OpenAI API family of a public model id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("easel.models")


@dataclass(frozen=True)
class ModelFamily:
    name: str
    pipelines: tuple[str, ...]  # text-to-image pipeline classes of the family
    negative_prompt: bool = True  # classifier-free guidance with a negative prompt
    packed_latents: bool = False  # FLUX: latents are 2x2 latent patches packed into tokens
    upcast_vae: bool = False  # SDXL: an fp16 VAE with `force_upcast` decodes in fp32
    # Image-to-image takes `width`/`height` (SD3, FLUX); without them it renders at the model's
    # default size (1024 px) whatever the input's. SD/SDXL take no size: the input's is used.
    img2img_size: bool = False
    # Edits and variations condition on a list of reference images (the text-to-image call's
    # `image`), not image-to-image or inpainting: FLUX.2.
    references: bool = False
    # The step-callback tensors whose batch classifier-free guidance doubles (unconditional
    # half first): halved when a pipeline's `guided_fraction` ends guidance part-way.
    # () where guidance cannot end part-way (FLUX has none to end; SD3's image-to-image does
    # not hand over its pooled embeddings).
    guided_tensors: tuple[str, ...] = ()

    def doubled_tensors(self, pipe: Any) -> list[str]:
        """Of `guided_tensors`, those this pipeline class hands to its step callback."""
        offered = set(getattr(pipe, "_callback_tensor_inputs", ()))
        return [name for name in self.guided_tensors if name in offered]

    def can_end_guidance(self, pipe: Any) -> bool:
        """Whether guidance can end part-way through a call of `pipe`."""
        return "prompt_embeds" in self.doubled_tensors(pipe)

    def size_multiple(self, pipe: Any) -> int:
        """Render sizes must be multiples of this: the VAE's downsampling times the latent
        patch a transformer token covers (2 for SD3's patch embedding and FLUX's packing)."""
        patch = 2 if self.packed_latents else getattr(pipe, "patch_size", 1)
        return int(pipe.vae_scale_factor * patch)

    def decode(self, pipe: Any, latents: Any, width: int, height: int) -> Any:
        """Latents taken mid-denoising (a step callback's) -> image tensor in [-1, 1], the way
        the pipeline decodes its final latents. `width`/`height`: the render size in pixels."""
        import torch

        vae = pipe.vae
        cfg = vae.config
        if self.packed_latents:
            latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:  # SDXL-style VAEs with per-channel statistics
            shape = (1, -1, 1, 1)
            latents = (latents * torch.tensor(std).view(shape).to(latents) / cfg.scaling_factor
                       + torch.tensor(mean).view(shape).to(latents))
        else:
            latents = latents / cfg.scaling_factor
            if getattr(cfg, "shift_factor", None) is not None:  # SD3 and FLUX VAEs
                latents = latents + cfg.shift_factor
        upcast = self.upcast_vae and vae.dtype == torch.float16 and cfg.force_upcast
        if upcast:  # the SDXL VAE overflows in fp16: the pipeline itself decodes in fp32
            vae.to(torch.float32)
        try:
            with torch.no_grad():
                return vae.decode(latents.to(vae.dtype)).sample
        finally:
            if upcast:
                vae.to(torch.float16)


@dataclass(frozen=True)
class Flux2Family(ModelFamily):
    """FLUX.2: 2x2 latent patches, normalised by the VAE's batch-norm statistics, packed row by
    row into tokens; previews undo that the way the pipeline does before its own decode."""

    def size_multiple(self, pipe: Any) -> int:
        return int(pipe.vae_scale_factor * 2)

    def decode(self, pipe: Any, latents: Any, width: int, height: int) -> Any:
        import torch

        rows, cols = height // self.size_multiple(pipe), width // self.size_multiple(pipe)
        tokens = latents.reshape(latents.shape[0], rows, cols, -1).permute(0, 3, 1, 2)
        bn, eps = pipe.vae.bn, pipe.vae.config.batch_norm_eps
        mean = bn.running_mean.view(1, -1, 1, 1).to(tokens)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + eps).to(tokens)
        with torch.no_grad():
            spatial = pipe._unpatchify_latents(tokens * std + mean)
            return pipe.vae.decode(spatial.to(pipe.vae.dtype)).sample


# Inpainting pipelines double their mask and masked-image latents too.
SD = ModelFamily("sd", ("StableDiffusionPipeline",),  # SD 1.x and 2.x
                 guided_tensors=("prompt_embeds", "mask", "masked_image_latents"))
SDXL = ModelFamily("sdxl", ("StableDiffusionXLPipeline",), upcast_vae=True,
                   guided_tensors=("prompt_embeds", "add_text_embeds", "add_time_ids", "mask",
                                   "masked_image_latents"))
SD3 = ModelFamily("sd3", ("StableDiffusion3Pipeline",), img2img_size=True)
# FLUX's guidance_scale is an embedded (distilled) guidance, not classifier-free guidance: a
# negative prompt would need `true_cfg_scale` and twice the compute, so it is not passed.
FLUX = ModelFamily("flux", ("FluxPipeline",), negative_prompt=False, packed_latents=True,
                   img2img_size=True)
# FLUX.2 [dev] and [klein]: several reference images per edit (catalog `reference_images`).
FLUX2 = Flux2Family("flux2", ("Flux2KleinPipeline", "Flux2Pipeline"), negative_prompt=False,
                    packed_latents=True, references=True)
FAMILIES = (SD, SDXL, SD3, FLUX, FLUX2)


def family_of(pipe: Any) -> ModelFamily:
    """The family of a loaded text-to-image pipeline; others are treated like SD 1.x."""
    name = type(pipe).__name__
    for family in FAMILIES:
        if name in family.pipelines:
            return family
    log.warning("%s is not a known pipeline family (%s): treated like Stable Diffusion",
                name, ", ".join(f.name for f in FAMILIES))
    return SD


def loader_kwargs(source: str) -> dict[str, Any]:
    """Extra `from_pretrained` arguments: no safety checker, for the pipelines that have one
    (others warn about arguments they do not expect)."""
    import inspect

    import diffusers

    try:
        class_name = diffusers.DiffusionPipeline.load_config(source)["_class_name"]
        init = getattr(diffusers, class_name).__init__
    except (OSError, KeyError, AttributeError):
        return {}  # not a pipeline folder: let from_pretrained say why
    if "safety_checker" not in inspect.signature(init).parameters:
        return {}
    return {"safety_checker": None, "requires_safety_checker": False}
