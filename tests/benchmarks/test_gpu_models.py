"""benchmarks.gpu_models: the full-size configs are wired like the published architectures, and
the tiny pipelines (the GPU script's `--tiny` dry run) load and render through Easel's loader."""

from __future__ import annotations

import tomllib
from pathlib import Path

from benchmarks import gpu_models
from core.catalog import parse_catalog


def test_full_size_configs_wire_up_like_sd15_and_sdxl() -> None:
    assert gpu_models.SD15_UNET["cross_attention_dim"] == gpu_models.CLIP_L["hidden_size"]
    # SDXL: both encoders' hidden states side by side; pooled projection plus 6 time ids.
    assert gpu_models.SDXL_UNET["cross_attention_dim"] == \
        gpu_models.CLIP_L["hidden_size"] + gpu_models.CLIP_BIGG["hidden_size"]
    assert gpu_models.SDXL_UNET["projection_class_embeddings_input_dim"] == \
        gpu_models.CLIP_BIGG["projection_dim"] + 6 * gpu_models.SDXL_UNET["addition_time_embed_dim"]
    tiny_xl = gpu_models.TINY_XL_UNET
    assert tiny_xl["cross_attention_dim"] == 2 * gpu_models.TINY_CLIP["hidden_size"]
    assert tiny_xl["projection_class_embeddings_input_dim"] == \
        gpu_models.TINY_CLIP["projection_dim"] + 6 * tiny_xl["addition_time_embed_dim"]


def test_tiny_pipelines_load_and_render_through_easel(tmp_path: Path) -> None:
    from models.loading import load_pipeline
    from models.rendering import generate_prompts

    folders = {kind: gpu_models.build(kind, tmp_path / kind, tiny=True)
               for kind in ("sd15", "sdxl")}
    catalog = parse_catalog(tomllib.loads(gpu_models.catalog(folders, {"sd15": 64, "sdxl": 64},
                                                             steps=1)))
    assert set(catalog.models) == {"bench-sd15", "bench-sdxl"}
    expected = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
    for kind, name in expected.items():
        loaded = load_pipeline(catalog.pipelines[kind])
        assert type(loaded.text2img).__name__ == name
        images = generate_prompts(loaded, ["a lighthouse"] * 2, None, [1, 2], 1, 7.5, 64, 64)
        assert [image.size for image in images] == [(64, 64), (64, 64)]
