"""A tiny random-weight FLUX.2 [klein] pipeline built offline: a 2-layer Qwen3 text encoder, a
word-level tokenizer with a chat template, a one-block VAE and a one-layer transformer, the
shapes diffusers' own tests use.  Weights are random: tests check plumbing, not pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ["a", "red", "blue", "green", "circle", "square", "cat", "on", "the", "and", "with"]
# Qwen's chat markup, reduced to what the pipeline's apply_chat_template call needs.
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}"
                 "<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant"
                 "{% endif %}")


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant"]
    vocab = {w: i for i, w in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   pad_token="<|endoftext|>", model_max_length=64,
                                   chat_template=CHAT_TEMPLATE)


def build() -> Any:
    import diffusers as d
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    transformer = d.Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False)
    # 27 layers: the pipeline stacks hidden states 9, 18 and 27, as for the real 4B encoder.
    encoder = Qwen3ForCausalLM(Qwen3Config(
        intermediate_size=16, hidden_size=16, num_hidden_layers=27, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=32, max_position_embeddings=512))
    # Three 2x down blocks: 8x like the real VAE, so renders are multiples of 16 px.
    vae = d.AutoencoderKLFlux2(
        sample_size=64, in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4), layers_per_block=1, latent_channels=4,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False)
    return d.Flux2KleinPipeline(scheduler=d.FlowMatchEulerDiscreteScheduler(), vae=vae,
                                text_encoder=encoder, tokenizer=_tokenizer(),
                                transformer=transformer, is_distilled=True)


def save(folder: Path) -> Path:
    """The pipeline saved in the diffusers layout under `folder`/flux2."""
    target = folder / "flux2"
    build().save_pretrained(target)
    return target
