"""Train Easel's default shapes-world model from a seed.

    python -m models.shapes.train --out runs/shapes            # CPU or CUDA, resumable
    python -m models.shapes.train --out runs/shapes --unet-steps 12000 --batch 512   # as shipped

Phases: render data -> train the VAE -> encode latents -> train UNet + text encoder jointly
(DDPM epsilon loss, min-SNR weighting, 10 % caption dropout for classifier-free guidance, EMA).
A checkpoint (`ckpt.pt`) is written every `--ckpt-every` steps so a cut-off run resumes where it
stopped; the exported pipeline folder (`pipeline/`, fp16, EMA weights) is refreshed with it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.shapes import architecture as arch
from models.shapes.train_data import make_dataset, tokenize


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", type=int, default=600_000, help="rendered training images")
    p.add_argument("--vae-steps", type=int, default=3000)
    p.add_argument("--vae-batch", type=int, default=256)
    p.add_argument("--unet-steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500, help="linear learning-rate warm-up steps")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=1000)
    p.add_argument("--max-seconds", type=float, default=0,
                   help="stop the UNet phase early (0: off)")
    p.add_argument("--vae-max-seconds", type=float, default=0, help="stop the VAE phase early")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mix", default="0.15,0.2,0.35,0.3",
                   help="caption-kind weights: single,position,pair,count")
    p.add_argument("--init-from", type=Path,
                   help="start from an exported pipeline folder (skips the VAE phase)")
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def _autocast(device: str) -> Any:
    # bf16 autocast is ~5x faster than fp32 on GPUs and on CPUs with avx512_bf16.
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def train_vae(vae: Any, images: torch.Tensor, args: argparse.Namespace, gen: torch.Generator,
              start: int, opt: Any) -> None:
    vae.train()
    t0 = time.time()
    for step in range(start, args.vae_steps):
        if args.vae_max_seconds and time.time() - t0 > args.vae_max_seconds:
            print(f"vae stopping at step {step}: --vae-max-seconds reached", flush=True)
            break
        idx = torch.randint(0, images.shape[0], (args.vae_batch,), generator=gen)
        x = images[idx.to(images.device)].to(args.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        with _autocast(args.device):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample
        rec = rec.float()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == args.vae_steps - 1:
            print(f"vae step {step} loss {loss.item():.5f}", flush=True)


@torch.no_grad()
def encode_latents(vae: Any, images: torch.Tensor,
                   device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (sampled fresh each UNet step)."""
    vae.eval()
    means, stds = [], []
    for i in range(0, images.shape[0], 2048):
        x = images[i:i + 2048].to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        dist = vae.encode(x).latent_dist
        means.append(dist.mean.to(torch.bfloat16))
        stds.append(dist.std.to(torch.bfloat16))
    return torch.cat(means), torch.cat(stds)


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():  # one fused call: a per-tensor loop costs hundreds of kernel launches
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()],
                             1 - decay)


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a run killed mid-write keeps the previous checkpoint


def _export(args: argparse.Namespace, state: dict[str, Any], tokenizer: Any) -> None:
    text, vae, unet = (arch.build_text_encoder(len(tokenizer)), arch.build_vae(), arch.build_unet())
    text.load_state_dict(state["text_ema"])
    unet.load_state_dict(state["unet_ema"])
    vae.load_state_dict(state["vae"])
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    arch.save_pipeline(args.out / "pipeline", text, vae, unet, tokenizer)


def _state_from_pipeline(folder: Path) -> dict[str, Any]:
    """Weights of an exported pipeline as a fresh checkpoint (a new optimizer; EMA = weights)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    f = str(folder.resolve())
    vae = AutoencoderKL.from_pretrained(f, subfolder="vae", dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(f, subfolder="unet", dtype=torch.float32)
    text = CLIPTextModel.from_pretrained(f, subfolder="text_encoder", dtype=torch.float32)
    return {"vae": vae.state_dict(), "vae_done": True,
            "scaling_factor": float(vae.config.scaling_factor),
            "unet": unet.state_dict(), "text": text.state_dict(),
            "unet_ema": unet.state_dict(), "text_ema": text.state_dict(), "step": 0}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    tokenizer = arch.build_tokenizer()
    if args.threads:
        torch.set_num_threads(args.threads)
    mix = tuple(float(x) for x in args.mix.split(","))
    images_np, captions = make_dataset(args.seed, args.data, args.workers, mix)
    ids = torch.from_numpy(tokenize(tokenizer, captions))
    empty = torch.from_numpy(tokenize(tokenizer, [""]))[0]
    images = torch.from_numpy(images_np).to(args.device)
    print(f"data: {len(captions)} images in {time.time() - t0:.1f}s", flush=True)

    ckpt_path = args.out / "ckpt.pt"
    state: dict[str, Any] = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else {}
    if not state and args.init_from:
        state = _state_from_pipeline(args.init_from)
    vae = arch.build_vae().to(args.device)
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    if "vae" in state:
        vae.load_state_dict(state["vae"])
    if state.get("vae_done") is not True:
        train_vae(vae, images, args, gen, 0, vae_opt)
        state = {"vae": vae.state_dict(), "vae_done": True}
        _save(ckpt_path, state)
    vae.requires_grad_(False)
    mean, std = encode_latents(vae, images, args.device)
    del images
    if "scaling_factor" not in state:
        sample = mean[:4096].float() + std[:4096].float() * torch.randn_like(mean[:4096].float())
        state["scaling_factor"] = float(1.0 / sample.std())
    scale = state["scaling_factor"]
    print(f"latents {tuple(mean.shape)} scaling_factor {scale:.4f}", flush=True)

    text = arch.build_text_encoder(len(tokenizer)).to(args.device)
    unet = arch.build_unet().to(args.device)
    if "unet" in state:
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
    unet_ema = copy.deepcopy(unet).requires_grad_(False)
    text_ema = copy.deepcopy(text).requires_grad_(False)
    if "unet_ema" in state:
        unet_ema.load_state_dict(state["unet_ema"])
        text_ema.load_state_dict(state["text_ema"])
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    if "opt" in state:
        opt.load_state_dict(state["opt"])
    sched = arch.build_train_scheduler()
    alphas = sched.alphas_cumprod.to(args.device)
    snr = alphas / (1 - alphas)
    loss_weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 weighting for epsilon prediction
    ids, empty = ids.to(args.device), empty.to(args.device)
    step = int(state.get("step", 0))
    t_unet = time.time()
    log: list[dict[str, float]] = []
    while step < args.unet_steps:
        idx = torch.randint(0, mean.shape[0], (args.batch,), generator=gen).to(args.device)
        lat = (mean[idx].float() + std[idx].float() * torch.randn_like(mean[idx].float())) * scale
        tok = ids[idx]
        drop = torch.rand(args.batch, device=args.device) < 0.1
        tok = torch.where(drop[:, None], empty[None], tok)
        noise = torch.randn_like(lat)
        t = torch.randint(0, sched.config.num_train_timesteps, (args.batch,), device=args.device)
        noisy = sched.add_noise(lat, noise, t)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        with _autocast(args.device):
            cond = text(tok).last_hidden_state
            pred = unet(noisy, t, cond).sample
        per = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per * loss_weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        _ema_update(unet_ema, unet, decay)
        _ema_update(text_ema, text, decay)
        step += 1
        elapsed = time.time() - t_unet
        out_of_time = args.max_seconds and elapsed > args.max_seconds
        if step % 100 == 0:
            print(f"unet step {step}/{args.unet_steps} loss {loss.item():.4f} "
                  f"{step / max(elapsed, 1e-9):.2f} it/s (this run)", flush=True)
            log.append({"step": step, "loss": loss.item(), "seconds": elapsed})
        if step % args.ckpt_every == 0 or step == args.unet_steps or out_of_time:
            state.update(step=step, unet=unet.state_dict(), text=text.state_dict(),
                         unet_ema=unet_ema.state_dict(), text_ema=text_ema.state_dict(),
                         opt=opt.state_dict())
            _save(ckpt_path, state)
            _export(args, state, tokenizer)
            (args.out / "train_log.json").write_text(json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "step": step,
                 "total_seconds": time.time() - t0, "log": log}, indent=1))
            print(f"checkpoint + export at step {step}", flush=True)
        if out_of_time:
            print(f"stopping at step {step}: --max-seconds reached", flush=True)
            break
    if step >= args.unet_steps and not (args.out / "pipeline").exists():
        _export(args, state, tokenizer)
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
