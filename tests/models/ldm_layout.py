"""Writes a diffusers SD 1.x, SD 2.x or SDXL pipeline as one original-layout (LDM/CompVis)
`.safetensors` file, the way most fine-tunes are published, so tests can load single files
without any download.

diffusers reads this layout (`from_single_file`) but has no writer in its package: this is the
inverse of its key mapping for the UNet, the VAE and the CLIP and OpenCLIP text encoders, for any
block count and `layers_per_block` (the tiny test pipelines are not SD-sized). SD3 and FLUX
transformers: mmdit_layout.py.
"""

from __future__ import annotations

import re
from typing import Any


def _resnet(name: str) -> str:
    for a, b in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"),
                 ("time_emb_proj", "emb_layers.1"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")):
        name = name.replace(f".{a}.", f".{b}.") if f".{a}." in name else name
    return name


def unet_key(key: str, layers: int) -> str:
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    head, _, leaf = key.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{leaf}"
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = f"input_blocks.{1 + i * (layers + 1) + j}.{0 if kind == 'resnets' else 1}."
        return _resnet("." + block + rest)[1:] if kind == "resnets" else block + rest
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (layers + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        index = 1 if m[1] == "attentions" else 2 * int(m[2])
        block = f"middle_block.{index}."
        return _resnet("." + block + m[3])[1:] if m[1] == "resnets" else block + m[3]
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = f"output_blocks.{i * (layers + 1) + j}.{0 if kind == 'resnets' else 1}."
        return _resnet("." + block + rest)[1:] if kind == "resnets" else block + rest
    raise KeyError(key)


def unet_state(unet: Any) -> dict[str, Any]:
    layers = unet.config.layers_per_block
    state = unet.state_dict()
    out = {}
    for key, value in state.items():
        m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
        if m:  # the last layer of an up block: after its resnet, and its attention if any
            i = int(m[1])
            attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
            new = f"output_blocks.{i * (layers + 1) + layers}.{2 if attn else 1}.conv.{m[2]}"
        else:
            new = unet_key(key, layers)
        out["model.diffusion_model." + new] = value
    return out


def vae_key(key: str, blocks: int) -> str:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.",
                 key)
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.",
                 lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.", key)
    key = re.sub(r"(decoder\.up\.\d+)\.resnets\.", r"\1.block.", key)
    key = re.sub(r"(decoder\.up\.\d+)\.upsamplers\.0\.", r"\1.upsample.", key)
    key = re.sub(r"mid_block\.resnets\.(\d)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                 ("to_out.0", "proj_out")):
        key = key.replace(f"mid_block.attentions.0.{a}.", f"mid.attn_1.{b}.")
    return key


def vae_state(vae: Any) -> dict[str, Any]:
    blocks = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        new = vae_key(key, blocks)
        if ".attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out["first_stage_model." + new] = value
    return out


def _clip(encoder: Any, prefix: str) -> dict[str, Any]:
    """A transformers CLIP text encoder as LDM holds it (the text_model.* layout)."""
    return {prefix + ("" if key.startswith(("text_model.", "text_projection")) else
                      "text_model.") + key: value for key, value in encoder.state_dict().items()}


def _open_clip(encoder: Any, prefix: str) -> dict[str, Any]:
    """A CLIP text encoder as OpenCLIP holds it: SDXL's second one (with a projection), or
    SD 2.x's (a CLIPTextModel: its file has a projection too, which diffusers ignores)."""
    import torch

    state = {("" if k.startswith(("text_model.", "text_projection")) else "text_model.") + k: v
             for k, v in encoder.state_dict().items()}  # CLIPTextModel is flat since 5.6
    emb = "text_model.embeddings."
    width = state[emb + "token_embedding.weight"].shape[1]
    projection = state.get("text_projection.weight", torch.eye(width))
    out = {prefix + "positional_embedding": state[emb + "position_embedding.weight"],
           prefix + "token_embedding.weight": state[emb + "token_embedding.weight"],
           prefix + "text_projection": projection.T}
    for leaf in ("weight", "bias"):
        out[f"{prefix}ln_final.{leaf}"] = state[f"text_model.final_layer_norm.{leaf}"]
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")}
    for n in layers:
        src, dst = f"text_model.encoder.layers.{n}.", f"{prefix}transformer.resblocks.{n}."
        for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                     ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj")):
            for leaf in ("weight", "bias"):
                out[f"{dst}{b}.{leaf}"] = state[f"{src}{a}.{leaf}"]
        for leaf in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{leaf}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{leaf}"] for p in ("q", "k", "v")])
    return out


def sdxl_single_file(pipe: Any) -> dict[str, Any]:
    """The state dict of an original SDXL checkpoint holding `pipe`'s weights."""
    state = {**unet_state(pipe.unet), **vae_state(pipe.vae),
             **_clip(pipe.text_encoder, "conditioner.embedders.0.transformer."),
             **_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model.")}
    return {k: v.contiguous() for k, v in state.items()}


def sd2_single_file(pipe: Any) -> dict[str, Any]:
    """The state dict of an original SD 2.x checkpoint (OpenCLIP text encoder)."""
    state = {**unet_state(pipe.unet), **vae_state(pipe.vae),
             **_open_clip(pipe.text_encoder, "cond_stage_model.model.")}
    return {k: v.contiguous() for k, v in state.items()}


def sd_single_file(pipe: Any) -> dict[str, Any]:
    """The state dict of an original SD 1.x checkpoint holding `pipe`'s weights."""
    state = {**unet_state(pipe.unet), **vae_state(pipe.vae),
             **_clip(pipe.text_encoder, "cond_stage_model.transformer.")}
    return {k: v.contiguous() for k, v in state.items()}
