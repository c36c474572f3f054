"""Single-file checkpoints of every family: one original-layout .safetensors plus a config
folder, loaded offline, rendering what the same weights render from a diffusers folder.

SD 1.x, SD 2.x and SDXL files hold every component. The SD3 file is sd3_medium_incl_clips'
kind (no T5) and the FLUX.1 file holds the transformer alone, as published: their config folders
hold the weights of what the file lacks.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.catalog import PipelineSpec, load_catalog
from models import rendering
from models.checks import CheckpointError, absent_components, check_single_file
from models.loading import load_pipeline
from tests.models.ldm_layout import sd2_single_file, sd_single_file, sdxl_single_file
from tests.models.mmdit_layout import flux_transformer_state, sd3_single_file
from tests.models.test_families import (
    CLIP,
    FLOW_VAE,
    NATIVE,
    UNET,
    VAE,
    _build,
    _clip_tokenizer,
    _t5,
)

CATALOG = """
[pipelines.fine-tune]
path = "fine-tune.safetensors"   # beside the catalog: no ./ needed
config = "base-config"
native_size = 64
steps = 2
[[models]]
id = "mine"
pipeline = "fine-tune"
"""
# kind: (its family, the components whose weights the file lacks and the config folder holds)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sd": ("sd", ()), "sd2": ("sd", ()), "sdxl": ("sdxl", ()),
    "sd3": ("sd3", ("text_encoder_3",)),
    "flux": ("flux", ("text_encoder", "text_encoder_2", "vae"))}


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


def _sd3(folder: Path) -> Any:
    """A tiny SD3.5-Medium-like pipeline (qk norms, a dual-attention block), its CLIPs of two
    widths like SDXL's, CLIP-L's projection the identity that diffusers gives it when the
    original file (which has none) is read."""
    import diffusers as d
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = _clip_tokenizer(folder / "clip-tokenizer")
    clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP))
    clip_l.text_projection.weight.data = torch.eye(CLIP["hidden_size"])
    t5, t5_tokenizer = _t5()
    transformer = d.SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
        joint_attention_dim=32, pooled_projection_dim=64, pos_embed_max_size=16,
        qk_norm="rms_norm", dual_attention_layers=(0,))
    return d.StableDiffusion3Pipeline(
        transformer=transformer, vae=d.AutoencoderKL(**FLOW_VAE), text_encoder=clip_l,
        tokenizer=tok, tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=t5_tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**{**CLIP, "hidden_size": 48})),
        scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0))


def _single_file(kind: str, pipe: Any) -> dict[str, Any]:
    if kind == "flux":
        # diffusers converts FLUX.1's original layout at FLUX.1's width only (3072 is fixed in
        # convert_flux_transformer_checkpoint_to_diffusers), so the tiny transformer is written
        # in diffusers' own layout, which from_single_file loads unconverted. The original
        # layout, at full width: test_flux1_original_layout.
        return pipe.transformer.state_dict()
    writers = {"sd": sd_single_file, "sd2": sd2_single_file, "sdxl": sdxl_single_file,
               "sd3": sd3_single_file}
    return writers[kind](pipe)


def _config(folder: Path, target: Path, keep: tuple[str, ...] = ()) -> None:
    """`folder` without its weights, but for those of the components in `keep`."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    for name in keep:
        for weights in (folder / name).glob("*.safetensors"):
            shutil.copy(weights, target / name)


@dataclass(frozen=True)
class Files:
    kind: str
    root: Path
    file: Path
    config: Path


@pytest.fixture(scope="module", params=list(KINDS))
def files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Files:
    """A tiny pipeline as a folder, as one original-layout file, and its config folder."""
    kind: str = request.param
    root = tmp_path_factory.mktemp(kind)
    pipe = {"sdxl": _sdxl, "sd3": _sd3}.get(kind, lambda f: _build(kind, f))(root / "build")
    pipe.save_pretrained(root / "folder")
    save_file(_single_file(kind, pipe), str(root / "fine-tune.safetensors"))
    _config(root / "folder", root / "base-config", KINDS[kind][1])
    (root / "models.toml").write_text(CATALOG)
    return Files(kind, root, root / "fine-tune.safetensors", root / "base-config")


def test_a_single_file_loads_offline_and_renders_like_its_folder(
        files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_catalog(files.root / "models.toml").pipelines["fine-tune"]
    assert (spec.path, spec.config) == (str(files.file), str(files.config))
    single = load_pipeline(spec)
    folder = load_pipeline(PipelineSpec(name="folder", path=str(files.root / "folder")))
    # The config folder chose the pipeline and its scheduler, not diffusers' guess from keys and
    # shapes (infer_diffusers_model_type), which needs real sizes: it takes every tiny file here
    # for SD 1.x (SDXL's 10th OpenCLIP block, SD3's 9216-wide modulation are not there).
    assert single.family.name == KINDS[files.kind][0]
    assert single.text2img.scheduler.config == folder.text2img.scheduler.config
    if files.kind == "sd2":
        assert single.text2img.scheduler.config.prediction_type == "v_prediction"
    args = (["a red circle"], None, [3], 2, 3.5, NATIVE, NATIVE)
    a = np.asarray(rendering.generate_prompts(single, *args)[0], dtype=np.int16)
    b = np.asarray(rendering.generate_prompts(folder, *args)[0], dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # the same weights, whichever way they were stored


def test_single_file_mistakes(files: Files, tmp_path: Path) -> None:
    config = str(files.config)
    with pytest.raises(CheckpointError, match="set `config` in its catalog entry"):
        load_pipeline(PipelineSpec(name="p", path=str(files.file)))
    with pytest.raises(CheckpointError, match="does not exist"):
        check_single_file(files.file, str(tmp_path / "nope"))
    (tmp_path / "old.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"only \.safetensors"):
        check_single_file(tmp_path / "old.ckpt", config)
    (tmp_path / "cut.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(CheckpointError, match=r"not a readable \.safetensors"):
        check_single_file(tmp_path / "cut.safetensors", config)
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)},
              str(tmp_path / "inpaint.safetensors"))
    with pytest.raises(CheckpointError, match="inpainting-only"):
        check_single_file(tmp_path / "inpaint.safetensors", config)


def test_what_the_file_lacks_comes_from_the_config_folder(files: Files, tmp_path: Path) -> None:
    lacking = KINDS[files.kind][1]
    assert sorted(absent_components(files.file, str(files.config))) == list(lacking)
    if not lacking:
        return
    bare = tmp_path / "bare"  # the config folder without any weights
    _config(files.root / "folder", bare)
    name = lacking[0]
    with pytest.raises(CheckpointError, match=rf"fine-tune\.safetensors holds no {name} \(.*"
                                              rf"hf download \S+ --include '{name}/\*'"):
        load_pipeline(PipelineSpec(name="p", path=str(files.file), config=str(bare)))


def test_diffusers_alone_does_not_take_them_from_the_config_folder(files: Files) -> None:
    """Why Easel loads them itself: from_single_file looks for a VAE in the file only, and for
    a text encoder's weights under diffusers' file names, not transformers' model.safetensors."""
    import importlib

    import diffusers
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    if not KINDS[files.kind][1]:
        return
    *given, last = KINDS[files.kind][1]  # all but the last given: diffusers fails on that one
    index = diffusers.DiffusionPipeline.load_config(str(files.config))
    parts = {name: getattr(importlib.import_module(index[name][0]), index[name][1])
             .from_pretrained(str(files.root / "folder"), subfolder=name) for name in given}
    with pytest.raises(SingleFileComponentError, match=f"Failed to load {index[last][1]}"):
        getattr(diffusers, index["_class_name"]).from_single_file(
            str(files.file), config=str(files.config), local_files_only=True, **parts)


@pytest.mark.slow
def test_flux1_original_layout(tmp_path: Path) -> None:
    """flux1-dev.safetensors' form (Black Forest Labs' bare keys, the transformer alone) through
    a catalog entry. diffusers converts it at FLUX.1's width only, so this transformer has it:
    one double and one single block, 530M parameters, 1 GB in bfloat16 (3 GB at peak, 16 s
    on two cores)."""
    import diffusers as d
    from accelerate import init_empty_weights

    _build("flux", tmp_path / "build").save_pretrained(tmp_path / "folder")
    big: Any
    with init_empty_weights():  # no time spent initialising what is overwritten below
        big = d.FluxTransformer2DModel(in_channels=64, num_layers=1, num_single_layers=1,
                                       joint_attention_dim=32, pooled_projection_dim=32,
                                       guidance_embeds=True)
    big = big.to_empty(device="cpu").to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    for param in big.parameters():
        param.data.normal_(generator=generator)
    _config(tmp_path / "folder", tmp_path / "config", KINDS["flux"][1])
    big.save_config(tmp_path / "config" / "transformer")
    save_file(flux_transformer_state(big), str(tmp_path / "flux1.safetensors"))
    loaded = load_pipeline(PipelineSpec(name="flux1", path=str(tmp_path / "flux1.safetensors"),
                                        config=str(tmp_path / "config")), dtype="bfloat16")
    assert loaded.family.name == "flux"
    got = loaded.text2img.transformer.state_dict()
    for key, value in big.state_dict().items():
        assert torch.equal(got[key], value), key
