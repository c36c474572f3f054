"""Every render path for every pipeline family, with tiny random-weight pipelines built offline.

Each family (SD 1.x, SD 2.x, SDXL, SD3, FLUX) is built from stock diffusers/transformers classes
with tiny configs, the way diffusers' own tests build dummy components, saved as a pipeline
folder and loaded back through Easel's `load_pipeline`.  The weights are random: the tests check
plumbing (sizes, seeds, masks, previews), not pictures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from core.catalog import PipelineSpec, load_catalog
from models import rendering, step_callbacks
from models.families import loader_kwargs
from models.loading import LoadedPipeline, load_pipeline

FAMILIES = ["sd", "sd2", "sdxl", "sd3", "flux"]
NATIVE = 64
CLIP: dict[str, Any] = {
    "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, "vocab_size": 64,
    "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
    "projection_dim": 32, "max_position_embeddings": 77, "hidden_act": "gelu",
}
# Four blocks: 8x downsampling like real SD/SDXL/SD3/FLUX VAEs (so FLUX and SD3 need 16 px).
VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "block_out_channels": (8, 8, 8, 8),
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1, "norm_num_groups": 2, "sample_size": NATIVE,
}
# SD3 and FLUX VAEs: 16 latent channels, a shift factor, no quant convs.
FLOW_VAE: dict[str, Any] = {**VAE, "latent_channels": 16, "use_quant_conv": False,
                            "use_post_quant_conv": False, "shift_factor": 0.0609,
                            "scaling_factor": 1.5035}
UNET: dict[str, Any] = {
    "sample_size": NATIVE // 8, "in_channels": 4, "out_channels": 4,
    "block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
}
WORDS = ["a", "red", "blue", "green", "circle", "square", "cat", "on", "the", "blurry"]


def _clip_tokenizer(folder: Path) -> Any:
    """A CLIP BPE tokenizer from a character vocabulary and no merges, written offline."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[f"{ch}</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def _t5() -> tuple[Any, Any]:
    """A tiny T5 encoder and a word-level tokenizer for it (T5 pads with id 0, ends with 1)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                        pad_token="<pad>", eos_token="</s>",
                                        model_max_length=512)
    encoder = T5EncoderModel(T5Config(vocab_size=32, d_model=32, d_ff=37, d_kv=8, num_layers=2,
                                      num_heads=4, relative_attention_num_buckets=8,
                                      pad_token_id=0, eos_token_id=1))
    return encoder, tokenizer


def _build(family: str, folder: Path) -> Any:
    import diffusers as d
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    tok = _clip_tokenizer(folder / "clip-tokenizer")
    clip = CLIPTextModel(CLIPTextConfig(**CLIP))
    if family in ("sd", "sd2"):
        sd2 = family == "sd2"  # SD 2.x: linear projections, per-block heads, v-prediction
        unet = d.UNet2DConditionModel(**UNET, cross_attention_dim=32,
                                      attention_head_dim=(2, 4) if sd2 else 2,
                                      use_linear_projection=sd2)
        scheduler = d.DPMSolverMultistepScheduler(
            steps_offset=1, prediction_type="v_prediction" if sd2 else "epsilon")
        return d.StableDiffusionPipeline(
            vae=d.AutoencoderKL(**VAE, latent_channels=4), text_encoder=clip, tokenizer=tok,
            unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
    if family == "sdxl":
        unet = d.UNet2DConditionModel(
            **UNET, cross_attention_dim=64, attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32)
        return d.StableDiffusionXLPipeline(
            vae=d.AutoencoderKL(**VAE, latent_channels=4), text_encoder=clip, tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP)),
            tokenizer_2=tok, unet=unet,
            scheduler=d.EulerDiscreteScheduler(steps_offset=1, timestep_spacing="leading"))
    t5, t5_tokenizer = _t5()
    transformer: Any
    if family == "sd3":
        transformer = d.SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=16, out_channels=16,  # 128 px default
            num_layers=1, attention_head_dim=8, num_attention_heads=4,
            caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64,
            pos_embed_max_size=16)
        return d.StableDiffusion3Pipeline(
            transformer=transformer, vae=d.AutoencoderKL(**FLOW_VAE),
            text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP)), tokenizer=tok,
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP)),
            tokenizer_2=tok, text_encoder_3=t5, tokenizer_3=t5_tokenizer,
            scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0))
    assert family == "flux"
    transformer = d.FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8), guidance_embeds=True)  # FLUX-dev style: embedded guidance
    return d.FluxPipeline(
        transformer=transformer, vae=d.AutoencoderKL(**FLOW_VAE), text_encoder=clip,
        tokenizer=tok, text_encoder_2=t5, tokenizer_2=t5_tokenizer,
        scheduler=d.FlowMatchEulerDiscreteScheduler())


def pipeline_folder(family: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline of `family` saved in the diffusers layout."""
    folder = tmp_path_factory.mktemp(family)
    _build(family, folder).save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> LoadedPipeline:
    family: str = request.param
    spec = PipelineSpec(name=family, path=str(pipeline_folder(family, tmp_path_factory)),
                        native_size=NATIVE, steps=2, guidance=3.5)
    return load_pipeline(spec)


def _arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(im.convert("RGB"), dtype=np.int16) for im in images]


def _picture() -> Image.Image:
    """An opaque test picture with structure: a gradient and a blue square."""
    x = np.linspace(0, 255, NATIVE, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (NATIVE, 1)), np.tile(x[:, None], (1, NATIVE)),
                    np.full((NATIVE, NATIVE), 90, np.uint8)], axis=-1)
    image = Image.fromarray(rgb).convert("RGBA")
    image.paste((20, 40, 220, 255), (8, 8, 24, 24))
    return image


def _collector() -> tuple[list[tuple[int, Image.Image]], Callable[[int, Image.Image], None]]:
    got: list[tuple[int, Image.Image]] = []
    return got, lambda index, image: got.append((index, image))


def test_loads_as_its_family(loaded: LoadedPipeline) -> None:
    expected = {"sd2": "sd"}.get(loaded.spec.name, loaded.spec.name)
    assert loaded.family.name == expected
    multiple = 16 if expected in ("sd3", "flux") else 8  # VAE 8x, times SD3/FLUX's 2x2 patch
    assert loaded.size_multiple == multiple
    w, h = rendering.render_dims(1792, 1024, 1024, multiple)
    assert w % multiple == 0 and h % multiple == 0
    # Only pipelines that have a safety checker are told to load without one.
    takes_checker = expected == "sd"
    assert ("safety_checker" in loader_kwargs(loaded.spec.path)) == takes_checker


def test_generate_one_seed_per_image(loaded: LoadedPipeline) -> None:
    args = (["a red circle"] * 2, None, [1, 2], 2, 3.5, NATIVE, NATIVE)
    a, b = _arrays(rendering.generate_prompts(loaded, *args))
    assert a.shape == (NATIVE, NATIVE, 3) and not np.array_equal(a, b)
    again = _arrays(rendering.generate_prompts(loaded, *args))
    assert np.array_equal(again[0], a) and np.array_equal(again[1], b)
    twins = _arrays(rendering.generate_prompts(loaded, ["a red circle"] * 2, None, [7, 7], 2,
                                               3.5, NATIVE, NATIVE))
    assert np.array_equal(twins[0], twins[1])


def test_other_sizes_render_at_the_family_multiple(loaded: LoadedPipeline) -> None:
    # 96x40 renders at 64x32 (SD3/FLUX) or 64x24 (SD/SDXL), then is resized to what was asked.
    (image,) = rendering.generate_prompts(loaded, ["a cat"], None, [3], 2, 3.5, 96, 40)
    assert image.size == (96, 40)


def test_negative_prompt(loaded: LoadedPipeline) -> None:
    args = (["a red circle"], [4], 2, 3.5, NATIVE, NATIVE)
    plain = _arrays(rendering.generate_prompts(loaded, args[0], None, *args[1:]))[0]
    negative = _arrays(rendering.generate_prompts(loaded, args[0], "blurry", *args[1:]))[0]
    # FLUX has no classifier-free guidance to take it: the negative prompt is not passed.
    assert np.array_equal(plain, negative) == (loaded.family.name == "flux")


def test_partial_previews_at_the_requested_size(loaded: LoadedPipeline) -> None:
    got, on_partial = _collector()
    (final,) = rendering.generate_prompts(loaded, ["a blue square"], None, [5], 2, 3.5, 128, 64,
                                          partials=2, on_partial=on_partial)
    assert [i for i, _ in got] == [0, 1]
    assert all(image.size == (128, 64) for _, image in got)
    # The last preview decodes the final latents: it must match the image (unpacking, scaling
    # and shift of the family's latents are right, not just shaped right).
    last, image = _arrays([got[-1][1], final])
    assert np.abs(last - image).max() <= 1


def test_edit_with_a_mask_keeps_the_rest(loaded: LoadedPipeline) -> None:
    picture = _picture()
    mask = Image.new("RGBA", picture.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 32, 56, 56))  # redraw this square only
    got, on_partial = _collector()
    images = rendering.edit(loaded, "a green circle", "blurry", [1, 2], 2, 3.5, NATIVE, NATIVE,
                            [picture], mask, None, partials=2, on_partial=on_partial)
    original = _arrays([picture])[0]
    outside = np.ones((NATIVE, NATIVE), bool)
    outside[32:56, 32:56] = False  # the seam is blended just inside the square, not outside
    for edited in _arrays(images):
        assert edited.shape == original.shape
        assert np.abs(edited - original)[outside].mean() <= 2
        assert np.abs(edited - original)[34:54, 34:54].mean() > 2  # the inside was redrawn
    assert [i for i, _ in got] == [0, 1]


def test_edit_without_transparency_is_image_to_image(loaded: LoadedPipeline) -> None:
    got, on_partial = _collector()
    images = rendering.edit(loaded, "a cat", None, [1, 2], 4, 3.5, NATIVE, NATIVE,
                            [_picture()], None, 0.75, partials=2, on_partial=on_partial)
    assert [im.size for im in images] == [(NATIVE, NATIVE)] * 2
    assert "Img2Img" in type(loaded.img2img).__name__
    a, b = _arrays(images)
    assert not np.array_equal(a, b)
    # A streamed edit without a mask previews too (3 of the 4 steps run at strength 0.75).
    assert [i for i, _ in got] == [0, 1]
    assert all(image.size == (NATIVE, NATIVE) for _, image in got)


def test_vary(loaded: LoadedPipeline) -> None:
    images = rendering.vary(loaded, [1, 2], 2, 1.0, 96, 96, _picture(), 0.6)
    assert [im.size for im in images] == [(96, 96)] * 2
    a, b = _arrays(images)
    assert not np.array_equal(a, b)
    # A strength so low that int(steps x strength) is 0 still runs one denoising step.
    (low,) = rendering.vary(loaded, [1], 2, 1.0, NATIVE, NATIVE, _picture(), 0.1)
    assert low.size == (NATIVE, NATIVE)


def test_image_to_image_renders_at_the_render_size(loaded: LoadedPipeline,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # SD3 and FLUX image-to-image would render at their default size (128 px for the tiny SD3,
    # 1024 for FLUX) unless told the size: slow, and not the native size the catalog chose.
    pipe, sizes = loaded.img2img, list[tuple[int, int]]()

    def spy(**kwargs: Any) -> Any:
        out = pipe(**kwargs)
        sizes.extend(image.size for image in out.images)
        return out

    monkeypatch.setitem(loaded._derived, "img2img", spy)
    rendering.vary(loaded, [1], 2, 1.0, 128, 64, _picture(), 0.6)
    assert sizes == [(64, 32)]


def test_preview_decode_upcasts_the_sdxl_vae_and_uses_latent_statistics() -> None:
    from types import SimpleNamespace

    from diffusers import AutoencoderKL

    from models.families import SD, SDXL

    torch.manual_seed(0)
    vae: Any = AutoencoderKL(**VAE, latent_channels=4, force_upcast=True,
                             latents_mean=[0.1] * 4, latents_std=[2.0] * 4)
    vae.to(torch.float16)
    pipe = SimpleNamespace(vae=vae)
    latents = torch.randn(1, 4, 2, 2, dtype=torch.float16)
    image = SDXL.decode(pipe, latents, 16, 16)
    assert image.dtype == torch.float32 and vae.dtype == torch.float16  # decoded in fp32
    assert SD.decode(pipe, latents, 16, 16).dtype == torch.float16  # SD pipelines do not upcast
    with torch.no_grad():
        expected = vae.float().decode(latents.float() * 2.0 / vae.config.scaling_factor + 0.1)
    assert torch.allclose(image, expected.sample, atol=1e-3)


def test_preview_steps() -> None:
    assert step_callbacks.preview_steps(20, 3) == [4, 9, 14]  # evenly spaced, as before
    assert step_callbacks.preview_steps(4, 3) == [0, 1, 2]
    assert step_callbacks.preview_steps(2, 2) == [0, 1]  # no two previews of the same step
    assert step_callbacks.preview_steps(1, 3) == [0]


def test_the_embedded_model_is_stable_diffusion() -> None:
    embedded = load_pipeline(load_catalog(None).pipelines["shapes"])
    assert embedded.family.name == "sd" and embedded.size_multiple == 8
    assert rendering.render_dims(100, 60, 64, embedded.size_multiple) == (64, 40)
