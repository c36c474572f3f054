"""GPU check: full-size SD 1.5 and SDXL UNets with random weights (realistic compute, no
downloads), eager vs Easel's GPU settings, at batch 1/2/4/8.

    python -m benchmarks.gpu                  # on a CUDA machine, a few minutes
    python -m benchmarks.gpu --tiny --device cpu   # the same code path, tiny, to check it runs

Prints ms per UNet step (classifier-free guidance doubles the batch, as in serving) and the
speed-up of each setting over eager fp16.  Settings: channels_last and torch.compile
(mode "reduce-overhead"), the switches `EASEL_CHANNELS_LAST` / `EASEL_COMPILE` turn on.
The service-in-front arm is `benchmarks.overhead` run on the same machine against a catalog that
points at a real checkpoint (weights cannot be downloaded here).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from diffusers import UNet2DConditionModel

SD15 = dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8, sample_size=64, layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL = dict(block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
            attention_head_dim=(5, 10, 20), sample_size=128, layers_per_block=2,
            transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
TINY = dict(block_out_channels=(32, 64), cross_attention_dim=32, attention_head_dim=4,
            sample_size=16, layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def _inputs(config: dict[str, Any], batch: int, device: str, dtype: Any) -> dict[str, Any]:
    size = int(config["sample_size"])
    kw: dict[str, Any] = {
        "sample": torch.randn(2 * batch, 4, size, size, device=device, dtype=dtype),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": torch.randn(2 * batch, 77, int(config["cross_attention_dim"]),
                                             device=device, dtype=dtype)}
    if config.get("addition_embed_type") == "text_time":
        kw["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2 * batch, 1280, device=device, dtype=dtype),
            "time_ids": torch.randn(2 * batch, 6, device=device, dtype=dtype)}
    return kw


def _time(unet: Any, kw: dict[str, Any], device: str, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):  # warm-up (and compilation)
            unet(**kw)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            unet(**kw)
        if device == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny UNet: checks the code path anywhere")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    models = {"tiny": TINY} if args.tiny else {"sd15": SD15, "sdxl": SDXL}
    for name, config in models.items():
        base: Any = UNet2DConditionModel(**config)
        base = base.to(args.device, dtype).eval()
        params = sum(q.numel() for q in base.parameters()) / 1e6
        print(f"== {name} UNet, {params:.0f} M parameters, {dtype}, {args.device} ==")
        print("  batch   eager ms/step   channels_last   +compile   speed-up (best)")
        for batch in (int(b) for b in args.batches.split(",")):
            kw = _inputs(config, batch, args.device, dtype)
            eager = _time(base, kw, args.device, args.repeats)
            base.to(memory_format=torch.channels_last)
            cl = _time(base, kw, args.device, args.repeats)
            comp = float("nan")  # inductor on a CPU takes minutes to build: GPU only
            if args.device == "cuda":
                compiled = torch.compile(base, mode="reduce-overhead")
                comp = _time(compiled, kw, args.device, args.repeats)
            base.to(memory_format=torch.contiguous_format)
            print(f"  {batch:5d}   {eager:13.1f}   {cl:13.1f}   {comp:8.1f}   "
                  f"{eager / min(cl, comp if comp == comp else cl):.2f}x")
        del base
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
