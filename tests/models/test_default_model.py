"""The embedded default model: stock diffusers pipelines load it offline and it follows prompts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from models.loading import EMBEDDED
from models.shapes.checker import check
from models.shapes.world import sample_scene

WEIGHTS = EMBEDDED["shapes"]


def test_weights_are_small_and_standard() -> None:
    size = sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert size <= 50 * 1024 * 1024
    index = json.loads((WEIGHTS / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]


@pytest.mark.parametrize("auto", ["AutoPipelineForText2Image", "AutoPipelineForImage2Image",
                                  "AutoPipelineForInpainting"])
def test_stock_auto_pipelines_load_offline(auto: str) -> None:
    import diffusers

    pipe = getattr(diffusers, auto).from_pretrained(str(WEIGHTS), dtype=torch.float32)
    assert pipe.unet.config.in_channels == 4 and pipe.vae.config.latent_channels == 4


def test_it_draws_what_single_prompts_ask_for() -> None:
    """Real weights, a fixed sample of prompts: a quality floor, not a plumbing check."""
    from diffusers import AutoPipelineForText2Image

    torch.set_num_threads(1)
    pipe = AutoPipelineForText2Image.from_pretrained(str(WEIGHTS), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rng = random.Random(5)
    scenes = [sample_scene(rng, "single", held_out=i % 2 == 1) for i in range(12)]
    images = pipe([s.caption for s in scenes], num_inference_steps=20, guidance_scale=5.0,
                  generator=[torch.Generator().manual_seed(i) for i in range(12)]).images
    passed = sum(check(im, s) for im, s in zip(images, scenes, strict=True))
    assert passed >= 9, f"{passed}/12 single-object prompts drawn correctly"


def test_model_card_exists() -> None:
    card = Path(__file__).resolve().parents[2] / "models" / "shapes" / "MODEL_CARD.md"
    assert "pass rate" in card.read_text().lower()
