"""The shapes world's contrastive image-text scorer (a tiny CLIP), as DALL·E 1 used CLIP:
draw several candidates, keep the ones whose picture matches the caption best.

A stock `transformers.CLIPModel` (ViT image tower over 8x8 patches of a 64 px image, causal text
tower over the shapes tokenizer's words) saved with `save_pretrained` beside its tokenizer and a
`CLIPImageProcessor` config, so any CLIP code loads it: `CLIPModel.from_pretrained(folder)`.
The text tower pools at the first padding token (`eos_token_id` = the pad id): the shapes
tokenizer adds no end token, and with causal attention that position has read the whole caption.
Trained by `models.shapes.train_scorer`; served by `models.scoring.Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models import scoring
from models.shapes.architecture import MAX_TOKENS

SHIPPED = Path(__file__).resolve().parent / "scorer"
SIZE = 64  # the world's native resolution; larger images are box-downsampled to it
PAD_ID = 0
MEAN, STD = [0.5] * 3, [0.5] * 3

TEXT: dict[str, Any] = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "max_position_embeddings": MAX_TOKENS,
                        "pad_token_id": PAD_ID, "bos_token_id": 1, "eos_token_id": PAD_ID}
VISION: dict[str, Any] = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
                          "num_attention_heads": 4, "image_size": SIZE, "patch_size": 8}
PROJECTION = 128


def build(vocab_size: int) -> Any:
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config={**TEXT, "vocab_size": vocab_size}, vision_config=VISION,
                        projection_dim=PROJECTION)
    return CLIPModel(config)


def token_ids(tokenizer: Any, captions: Sequence[str]) -> np.ndarray:
    """Ids padded to MAX_TOKENS with one pad kept (the pooled position): words past the 15th
    are dropped; the grammar's longest caption has 10."""
    return scoring.token_ids(tokenizer, captions, MAX_TOKENS, PAD_ID, pooled_at_pad=True)


def pixels(images: Sequence[Image.Image] | np.ndarray) -> np.ndarray:
    """N x 3 x 64 x 64 floats in [-1, 1] (mean 0.5, std 0.5, as the saved image processor)."""
    return scoring.pixels(images, SIZE, MEAN, STD)


def save(model: Any, tokenizer: Any, folder: Path) -> None:
    """Weights (fp16 safetensors), configs, tokenizer and image processor, in one folder."""
    import torch
    from transformers import CLIPImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(do_resize=True, size={"height": SIZE, "width": SIZE}, resample=4,
                       do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                       do_normalize=True, image_mean=MEAN,
                       image_std=STD).save_pretrained(folder)
