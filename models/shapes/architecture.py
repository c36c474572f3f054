"""The default model's components: stock diffusers/transformers classes with small configs.

Everything here is a Stable-Diffusion-shaped pipeline, so `AutoPipelineForText2Image`,
`...Image2Image` and `...Inpainting` load the saved folder with no Easel-specific code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.shapes.world import vocabulary

RESOLUTION = 64  # native pixels; the VAE downsamples 4x to a 16x16x4 latent
MAX_TOKENS = 16  # the longest grammar caption has 10 words
PAD, UNK = "[PAD]", "[UNK]"

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 192, "intermediate_size": 768, "num_hidden_layers": 4,
    "num_attention_heads": 4, "max_position_embeddings": MAX_TOKENS,
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "gelu",
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 128], "layers_per_block": 1, "norm_num_groups": 16,
    "sample_size": RESOLUTION,
}
UNET_CONFIG: dict[str, Any] = {
    "sample_size": RESOLUTION // 4, "in_channels": 4, "out_channels": 4,
    "block_out_channels": [64, 128, 192], "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3, "up_block_types": ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": TEXT_CONFIG["hidden_size"],
    "attention_head_dim": 4,  # in diffusers' UNet configs this is the number of heads
    "norm_num_groups": 32,
}
# Trained with this DDPM schedule; served with DPM-Solver++ built from the same betas.
SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001,
    "beta_end": 0.02, "prediction_type": "epsilon",
}


def build_tokenizer() -> Any:
    """A word-level tokenizer over the grammar's words, built offline.

    Saved as `PreTrainedTokenizerFast`, which transformers 4 and 5 both load from model_index.
    No BOS/EOS: the empty prompt (classifier-free guidance) is all padding, as in training.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, "[BOS]": 1, "[EOS]": 2, UNK: 3}
    for word in vocabulary():
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Lower-case and drop punctuation, so "A red circle." reads like the grammar's "a red circle".
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, pad_token=PAD,
                                   model_max_length=MAX_TOKENS)


def build_text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=vocab_size, **TEXT_CONFIG))


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE_CONFIG)


def build_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**UNET_CONFIG)


def build_train_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def build_inference_scheduler() -> Any:
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(**SCHEDULE, algorithm_type="dpmsolver++", steps_offset=1,
                                       solver_order=2)


def save_pipeline(out_dir: Path, text_encoder: Any, vae: Any, unet: Any, tokenizer: Any,
                  fp16: bool = True) -> None:
    """Write a standard StableDiffusionPipeline folder (weights in fp16 to halve the size)."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=build_inference_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    if fp16:
        pipe.to(torch.float16)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    # transformers 5 records "TokenizersBackend", which transformers 4 cannot load.
    index_path = out_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2) + "\n")
