"""Train the `outline` LoRA adapter shipped with the shapes model, on a CPU.

    python -m models.shapes.train_lora                         # writes the shipped file
    python -m models.shapes.train_lora --steps 800 --out /tmp/outline.safetensors

As shipped: the defaults (3,000 rendered images, 400 steps of batch 16, rank 8, one torch
thread), 1.2 MB in fp16.  A step takes about 1 s on a free core; the shipped run took 22 min on
a 2-core machine shared with other busy processes (rendering and encoding the data included).

The base model only draws filled shapes; this adapter teaches its UNet to draw every shape as
an outline in its colour, white inside (models/shapes/world.py `render(..., outline=4)`), a style
the checker measures (`models.shapes.checker.hollowness`).  The VAE and text encoder stay as they
are: only low-rank updates of the UNet's attention and feed-forward layers are trained (peft), and
the result is saved in the standard diffusers LoRA format (`save_lora_weights`), so
`pipe.load_lora_weights(file, adapter_name="outline")` loads it like any published adapter.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.shapes import architecture as arch
from models.shapes.train_data import tokenize
from models.shapes.world import DEFAULT_MIX, render_batch

BASE = Path(__file__).resolve().parent / "weights"
SHIPPED = Path(__file__).resolve().parent / "adapters" / "outline.safetensors"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
           "ff.net.2"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=SHIPPED)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", type=int, default=3000, help="rendered training images")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--outline", type=float, default=4.0, help="outline width, output pixels")
    # One thread: two busy threads on a shared 2-core machine ran 10x slower (measured).
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    p.add_argument("--save-every", type=int, default=0, help="save the adapter every N steps")
    return p.parse_args(argv)


def _models() -> tuple[Any, Any, Any, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, PreTrainedTokenizerFast

    base = str(BASE)
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=torch.float32)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base, subfolder="tokenizer")
    return vae, unet, text, tokenizer


@torch.no_grad()
def _latents(vae: Any, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    means, stds = [], []
    for i in range(0, x.shape[0], 512):
        dist = vae.encode(x[i:i + 512]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def save_adapter(unet: Any, out: Path) -> None:
    """The adapter in diffusers' LoRA format (fp16: it is the serving precision's floor)."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    # peft's key names (lora_A/lora_B), which load_lora_weights reads as they are; diffusers'
    # older lora.down/lora.up names cover attention layers only, and a mix loads half of it.
    layers = {k: v.detach().to(torch.float16).contiguous()
              for k, v in get_peft_model_state_dict(unet).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out.parent, unet_lora_layers=layers,
                                              weight_name=out.name, safe_serialization=True)


def main(argv: list[str] | None = None) -> None:
    from peft import LoraConfig

    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    vae, unet, text, tokenizer = _models()
    images, captions = render_batch(args.seed, args.data, mix=DEFAULT_MIX, outline=args.outline)
    mean, std = _latents(vae, images)
    scale = float(vae.config.scaling_factor)
    ids = torch.from_numpy(tokenize(tokenizer, captions))
    empty = torch.from_numpy(tokenize(tokenizer, [""]))[0]
    with torch.no_grad():  # the text encoder is frozen: encode every caption once
        cond_all = torch.cat([text(ids[i:i + 1024]).last_hidden_state
                              for i in range(0, len(ids), 1024)])
        uncond = text(empty[None]).last_hidden_state[0]
    print(f"data: {len(captions)} images, latents in {time.time() - t0:.1f}s", flush=True)

    unet.requires_grad_(False)
    # alpha = rank: the saved file needs no alpha metadata to load at the trained strength.
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=TARGETS,
                                init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    sched = arch.build_train_scheduler()
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    loss_weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5, as the base model was trained
    unet.train()
    for step in range(args.steps):
        idx = torch.randint(0, mean.shape[0], (args.batch,), generator=gen)
        lat = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scale
        # 10 % empty captions, so the unconditional branch of guidance draws outlines too.
        drop = torch.rand(args.batch, generator=gen) < 0.1
        cond = torch.where(drop[:, None, None], uncond[None], cond_all[idx])
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), generator=gen)
        noisy = sched.add_noise(lat, noise, t)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            pred = unet(noisy, t, cond).sample
        per = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per * loss_weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
        if args.save_every and (step + 1) % args.save_every == 0:
            save_adapter(unet, args.out)  # a cut-off run still leaves a usable adapter
    save_adapter(unet, args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.2f} MB) in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
