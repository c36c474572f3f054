"""SD 1.5- and SDXL-shaped diffusers pipelines with random weights, built from the configs below
and saved in diffusers format: a GPU machine without internet or checkpoints still runs the
real architectures (compute does not depend on weight values) through Easel's loader.

The configs are the published architectures' (UNet, VAE, CLIP text encoders, scheduler); the
tokenizer is a stand-in with CLIP's interface and 77-token length: which ids it emits costs
nothing, the sequence length is what the text encoder pays for. `tiny=True` builds the same
pipeline classes at toy sizes for a CPU dry run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SD15_UNET: dict[str, Any] = dict(
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    sample_size=64, layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET: dict[str, Any] = dict(
    block_out_channels=(320, 640, 1280), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
    sample_size=128, layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816)
VAE: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L: dict[str, Any] = dict(  # SD 1.5's text encoder, SDXL's first
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    projection_dim=768)
CLIP_BIGG: dict[str, Any] = dict(  # SDXL's second text encoder (with projection)
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
    num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)

# Toy sizes, same classes and wiring (SDXL's: 32 + 32 cross-attention, 32 + 6 x 8 time ids).
TINY_UNET: dict[str, Any] = dict(
    block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=4, sample_size=8,
    layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
TINY_XL_UNET: dict[str, Any] = dict(
    TINY_UNET, cross_attention_dim=64, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=80)
TINY_VAE: dict[str, Any] = dict(
    block_out_channels=(32, 64), layers_per_block=1, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
TINY_CLIP: dict[str, Any] = dict(
    vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)

# Catalog facts per architecture: the size it was trained at and its usual sampler.
NATIVE = {"sd15": 512, "sdxl": 1024}
SCHEDULER = {"sd15": "DDIMScheduler", "sdxl": "EulerDiscreteScheduler"}


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte-level alphabet (GPT-2's table): every byte has a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def _tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer over the byte alphabet with no merges, padded to 77 like CLIP's."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i
                                                   for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab_file=str(folder / "vocab.json"),
                         merges_file=str(folder / "merges.txt"), model_max_length=77)


def _scheduler(kind: str) -> Any:
    import diffusers

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  num_train_timesteps=1000, steps_offset=1)
    if kind == "sd15":
        common |= dict(clip_sample=False, set_alpha_to_one=False)
    return getattr(diffusers, SCHEDULER[kind])(**common)


def build(kind: str, out: Path, tiny: bool = False, device: str = "cpu") -> Path:
    """Build the `kind` ("sd15" or "sdxl") pipeline with random weights and save it (fp16 on a
    GPU, float32 on a CPU) as a diffusers folder at `out`; returns `out`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if (out / "model_index.json").exists():
        return out  # built earlier in this work folder
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    clip_l, clip_g = (TINY_CLIP, TINY_CLIP) if tiny else (CLIP_L, CLIP_BIGG)
    unet_config = (TINY_XL_UNET if kind == "sdxl" else TINY_UNET) if tiny else \
        (SDXL_UNET if kind == "sdxl" else SD15_UNET)
    scaling = 0.13025 if kind == "sdxl" else 0.18215
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: SDXL's 2.6 B parameters, in seconds
        parts: dict[str, Any] = {
            "unet": UNet2DConditionModel(**unet_config),
            "vae": AutoencoderKL(**(TINY_VAE if tiny else VAE), scaling_factor=scaling,
                                 sample_size=NATIVE[kind]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**clip_l)),
            "tokenizer": _tokenizer(out.parent / f"{out.name}-tokenizer"),
            "scheduler": _scheduler(kind)}
        if kind == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**clip_g))
            parts["tokenizer_2"] = parts["tokenizer"]
            pipe: Any = StableDiffusionXLPipeline(**parts)
        else:
            pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipe.to(dtype=dtype).save_pretrained(out, safe_serialization=True)
    return out


def catalog(folders: dict[str, Path], native: dict[str, int], steps: int) -> str:
    """Easel's catalog TOML serving each folder as its own pipeline and model id."""
    lines = []
    for kind, folder in folders.items():
        lines += [f"[pipelines.{kind}]", f'path = "{folder}"', f"native_size = {native[kind]}",
                  f"steps = {steps}", "guidance = 7.5", ""]
    for kind in folders:
        lines += ["[[models]]", f'id = "bench-{kind}"', f'pipeline = "{kind}"', ""]
    return "\n".join(lines)
