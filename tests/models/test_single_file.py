"""Single-file checkpoints (SD 1.x, SDXL): one original-layout .safetensors plus a config folder,
loaded offline, rendering what the same weights render from a diffusers folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.catalog import PipelineSpec, load_catalog
from models import rendering
from models.checks import CheckpointError, check_single_file
from models.loading import load_pipeline
from tests.models.ldm_layout import sd_single_file, sdxl_single_file
from tests.models.test_families import CLIP, NATIVE, UNET, VAE, _build, _clip_tokenizer

CATALOG = """
[pipelines.fine-tune]
path = "fine-tune.safetensors"   # beside the catalog: no ./ needed
config = "sd15-config"
native_size = 64
steps = 2
[[models]]
id = "mine"
pipeline = "fine-tune"
"""


def _sdxl(folder: Path) -> Any:
    """A tiny SDXL whose two text encoders differ in width, as real ones do (768 and 1280):
    that is how a single file's loader tells them apart."""
    import diffusers as d
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = _clip_tokenizer(folder / "clip-tokenizer")
    unet = d.UNet2DConditionModel(
        **UNET, cross_attention_dim=32 + 48, attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32)
    return d.StableDiffusionXLPipeline(
        vae=d.AutoencoderKL(**VAE, latent_channels=4),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP)), tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**{**CLIP, "hidden_size": 48})),
        tokenizer_2=tok, unet=unet,
        scheduler=d.EulerDiscreteScheduler(steps_offset=1, timestep_spacing="leading"))


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline as a folder, as one original-layout file, and its config folder."""
    root = tmp_path_factory.mktemp(request.param)
    pipe = _build("sd", root / "build") if request.param == "sd" else _sdxl(root / "build")
    pipe.save_pretrained(root / "folder")
    writer = sd_single_file if request.param == "sd" else sdxl_single_file
    save_file(writer(pipe), str(root / "fine-tune.safetensors"))
    shutil.copytree(root / "folder", root / "sd15-config",
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))  # no weights
    (root / "models.toml").write_text(CATALOG)
    return root


def test_a_single_file_loads_offline_and_renders_like_its_folder(
        files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_catalog(files / "models.toml").pipelines["fine-tune"]
    assert spec.path == str(files / "fine-tune.safetensors")
    assert spec.config == str(files / "sd15-config")
    single = load_pipeline(spec)
    folder = load_pipeline(PipelineSpec(name="folder", path=str(files / "folder")))
    assert single.family.name == files.name.rstrip("0123456789")  # sd or sdxl
    args = (["a red circle"], None, [3], 2, 3.5, NATIVE, NATIVE)
    a = np.asarray(rendering.generate_prompts(single, *args)[0], dtype=np.int16)
    b = np.asarray(rendering.generate_prompts(folder, *args)[0], dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # the same weights, whichever way they were stored


def test_single_file_mistakes(files: Path, tmp_path: Path) -> None:
    file = files / "fine-tune.safetensors"
    with pytest.raises(CheckpointError, match="set `config` in its catalog entry"):
        load_pipeline(PipelineSpec(name="p", path=str(file)))
    with pytest.raises(CheckpointError, match="does not exist"):
        check_single_file(file, str(tmp_path / "nope"))
    (tmp_path / "old.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"only \.safetensors"):
        check_single_file(tmp_path / "old.ckpt", str(files / "sd15-config"))
    (tmp_path / "cut.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(CheckpointError, match=r"not a readable \.safetensors"):
        check_single_file(tmp_path / "cut.safetensors", str(files / "sd15-config"))
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)},
              str(tmp_path / "inpaint.safetensors"))
    with pytest.raises(CheckpointError, match="inpainting-only"):
        check_single_file(tmp_path / "inpaint.safetensors", str(files / "sd15-config"))
