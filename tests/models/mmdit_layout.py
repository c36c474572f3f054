"""Writes SD3 and FLUX.1 transformers in their original (Stability / Black Forest Labs) key
layout, the inverse of diffusers' `convert_sd3_transformer_checkpoint_to_diffusers` and
`convert_flux_transformer_checkpoint_to_diffusers`, so tests can load single files offline.

Both layouts fuse what diffusers keeps apart (q, k and v; FLUX's single-block MLP input) and
order the final norm's modulation shift-then-scale where diffusers has scale-then-shift.
"""

from __future__ import annotations

from typing import Any


def _swap(weight: Any) -> Any:
    """shift, scale <-> scale, shift (its own inverse)."""
    import torch

    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _rename(state: dict[str, Any], table: dict[str, str], src: str, dst: str) -> dict[str, Any]:
    """`dst`+new for every `src`+old in `table` whose weight and bias (or, for a whole key
    such as SD3's pos_embed or a FLUX norm's scale, that key) the state holds."""
    out = {}
    for new, old in table.items():
        for leaf in ("weight", "bias", ""):
            key = f"{src}{old}.{leaf}" if leaf else f"{src}{old}"
            if key in state:
                out[f"{dst}{new}.{leaf}" if leaf else f"{dst}{new}"] = state[key]
    return out


def _fused(state: dict[str, Any], src: str, parts: tuple[str, ...], dst: str) -> dict[str, Any]:
    import torch

    return {f"{dst}.{leaf}": torch.cat([state[f"{src}{p}.{leaf}"] for p in parts])
            for leaf in ("weight", "bias")}


def _final(out: dict[str, Any], state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The final layer's modulation (shift, scale in the original), every tensor contiguous."""
    for leaf in ("weight", "bias"):
        out[f"{prefix}final_layer.adaLN_modulation.1.{leaf}"] = _swap(
            state[f"norm_out.linear.{leaf}"])
    return {k: v.contiguous() for k, v in out.items()}


def _blocks(state: dict[str, Any], prefix: str) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in state if k.startswith(prefix)})


SD3_TOP = {"pos_embed": "pos_embed.pos_embed", "x_embedder.proj": "pos_embed.proj",
           "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
           "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
           "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
           "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
           "context_embedder": "context_embedder", "final_layer.linear": "proj_out"}
SD3_BLOCK = {"x_block.attn.ln_q": "attn.norm_q", "x_block.attn.ln_k": "attn.norm_k",
             "context_block.attn.ln_q": "attn.norm_added_q",
             "context_block.attn.ln_k": "attn.norm_added_k",
             "x_block.attn.proj": "attn.to_out.0", "context_block.attn.proj": "attn.to_add_out",
             "x_block.attn2.ln_q": "attn2.norm_q", "x_block.attn2.ln_k": "attn2.norm_k",
             "x_block.attn2.proj": "attn2.to_out.0",
             "x_block.adaLN_modulation.1": "norm1.linear",
             "context_block.adaLN_modulation.1": "norm1_context.linear",
             "x_block.mlp.fc1": "ff.net.0.proj", "x_block.mlp.fc2": "ff.net.2",
             "context_block.mlp.fc1": "ff_context.net.0.proj",
             "context_block.mlp.fc2": "ff_context.net.2"}


def sd3_transformer_state(transformer: Any, prefix: str = "model.diffusion_model.") -> dict:
    """An SD3Transformer2DModel (SD3, SD3.5: qk norms, dual attention) as the original MMDiT."""
    state = transformer.state_dict()
    out = _rename(state, SD3_TOP, "", prefix)
    blocks = _blocks(state, "transformer_blocks.")
    for i in blocks:
        src, dst = f"transformer_blocks.{i}.", f"{prefix}joint_blocks.{i}."
        out |= _rename(state, SD3_BLOCK, src, dst)
        out |= _fused(state, src + "attn.to_", ("q", "k", "v"), dst + "x_block.attn.qkv")
        out |= _fused(state, src + "attn.add_", ("q_proj", "k_proj", "v_proj"),
                      dst + "context_block.attn.qkv")
        if f"{src}attn2.to_q.weight" in state:
            out |= _fused(state, src + "attn2.to_", ("q", "k", "v"), dst + "x_block.attn2.qkv")
    # The last block's context side only modulates (no output projection or MLP): its
    # modulation is shift-then-scale in the original, like the final layer's.
    last = f"{prefix}joint_blocks.{blocks[-1]}.context_block.adaLN_modulation.1."
    for leaf in ("weight", "bias"):
        out[last + leaf] = _swap(out[last + leaf])
    return _final(out, state, prefix)


FLUX_TOP = {"time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
            "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
            "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
            "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
            "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
            "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
            "txt_in": "context_embedder", "img_in": "x_embedder",
            "final_layer.linear": "proj_out"}
FLUX_DOUBLE = {"img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
               "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
               "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
               "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
               "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
               "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2",
               "txt_mlp.0": "ff_context.net.0.proj", "txt_mlp.2": "ff_context.net.2",
               "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out"}
FLUX_SINGLE = {"modulation.lin": "norm.linear", "linear2": "proj_out",
               "norm.query_norm.scale": "attn.norm_q.weight",
               "norm.key_norm.scale": "attn.norm_k.weight"}


def flux_transformer_state(transformer: Any, prefix: str = "") -> dict[str, Any]:
    """A FluxTransformer2DModel as Black Forest Labs publish it (flux1-dev.safetensors: bare
    keys; ComfyUI checkpoints prefix them with model.diffusion_model.)."""
    state = transformer.state_dict()
    out = _rename(state, FLUX_TOP, "", prefix)
    for i in _blocks(state, "transformer_blocks."):
        src, dst = f"transformer_blocks.{i}.", f"{prefix}double_blocks.{i}."
        out |= _rename(state, FLUX_DOUBLE, src, dst)
        out |= _fused(state, src + "attn.to_", ("q", "k", "v"), dst + "img_attn.qkv")
        out |= _fused(state, src + "attn.add_", ("q_proj", "k_proj", "v_proj"),
                      dst + "txt_attn.qkv")
    for i in _blocks(state, "single_transformer_blocks."):
        src, dst = f"single_transformer_blocks.{i}.", f"{prefix}single_blocks.{i}."
        out |= _rename(state, FLUX_SINGLE, src, dst)
        out |= _fused(state, src, ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
                      dst + "linear1")
    return _final(out, state, prefix)


def sd3_single_file(pipe: Any) -> dict[str, Any]:
    """An original SD3 checkpoint with its CLIPs but not T5 (sd3_medium_incl_clips): MMDiT,
    VAE, and the CLIP-L and CLIP-G text models under text_encoders.clip_l / clip_g."""
    from tests.models.ldm_layout import _clip, vae_state

    clip_l = _clip(pipe.text_encoder, "text_encoders.clip_l.transformer.")
    # The original CLIP-L has no projection: diffusers puts an identity in its place.
    clip_l.pop("text_encoders.clip_l.transformer.text_projection.weight")
    state = {**sd3_transformer_state(pipe.transformer), **vae_state(pipe.vae), **clip_l,
             **_clip(pipe.text_encoder_2, "text_encoders.clip_g.transformer.")}
    return {k: v.contiguous() for k, v in state.items()}
