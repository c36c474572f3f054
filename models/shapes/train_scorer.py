"""Train the shapes world's contrastive scorer (models/shapes/scorer.py) on the CPU in minutes.

    python -m models.shapes.train_scorer --out runs/scorer            # resumable (ckpt.pt)
    python -m models.shapes.train_scorer --out runs/scorer --export   # ... then ship it

Every step renders fresh scenes (models/shapes/world.py) and, for each, a *twin* one edit away
(another colour or shape, mirrored, the pair's places swapped, one object more or fewer) whose
caption is false of the first picture: hard negative images for each other's captions.  Each
picture also gets near-miss captions (models/shapes/negatives.py) as extra text columns.
Loss: CLIP's symmetric cross-entropy over that matrix; pairs that happen to be true (the same
caption twice, a single object that also satisfies another scene's caption) are masked out, so
nothing true is pushed apart.  Pictures are blurred, noised and tinted a little, because the
scorer judges a diffusion model's outputs, not clean renders.  Held-out colour-shape pairs are
never drawn or named (negatives.py, world.py).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.shapes import architecture as arch
from models.shapes import scorer
from models.shapes.negatives import holds, negative_claims, signature, twin
from models.shapes.world import KINDS, Scene, render, sample_scene


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64, help="scenes per step (each + its twin)")
    p.add_argument("--negatives", type=int, default=3, help="near-miss captions per picture")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--mix", default="0.2,0.2,0.35,0.25", help="single,position,pair,count")
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=0, help="stop early (0: off)")
    p.add_argument("--init-from", type=Path, help="start from a saved scorer folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--bank", type=Path, help="generated candidates (models.shapes.candidate_bank)"
                   " to rank per caption as well")
    p.add_argument("--bank-prompts", type=int, default=16, help="bank prompts per step")
    p.add_argument("--bank-weight", type=float, default=1.0)
    p.add_argument("--export", action="store_true",
                   help=f"also write the result to {scorer.SHIPPED}")
    return p.parse_args(argv)


def make_batch(rng: random.Random, scenes: int, negatives: int,
               mix: tuple[float, ...]) -> tuple[list[Scene], list[Scene]]:
    """Pictures (scenes with their twins, adjacent) and their text columns: first each
    picture's own caption, then `negatives` near misses per picture."""
    pictures: list[Scene] = []
    while len(pictures) < 2 * scenes:
        scene = sample_scene(rng, rng.choices(KINDS, weights=mix)[0])
        other = next((t for t in (twin(rng, scene) for _ in range(4)) if t is not None), None)
        pictures += [scene] if other is None else [scene, other]
    pictures = pictures[:2 * scenes]
    texts = list(pictures)
    for p in pictures:
        near = negative_claims(p)
        texts += rng.sample(near, min(negatives, len(near)))
    return pictures, texts


def truth_mask(pictures: list[Scene], texts: list[Scene]) -> torch.Tensor:
    """True where text j also holds of picture i (besides j == i): not a negative there."""
    by_sig: dict[Any, list[int]] = {}
    for i, p in enumerate(pictures):
        by_sig.setdefault(signature(p.objects), []).append(i)
    mask = torch.zeros(len(pictures), len(texts), dtype=torch.bool)
    for j, t in enumerate(texts):
        for i in by_sig.get(signature(t.objects), []):
            if i != j and holds(t, pictures[i].objects):
                mask[i, j] = True
    return mask


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur half the batch a little, tint every picture, add noise: a diffusion model's
    outputs are softer and less exact in colour than renders."""
    n = x.shape[0]
    sigma = 0.3 + 0.7 * float(torch.rand(1, generator=gen))
    k = torch.arange(-2, 3, dtype=torch.float32)
    w = torch.exp(-k ** 2 / (2 * sigma ** 2))
    w = w / w.sum()
    blurred = F.conv2d(x, w.view(1, 1, 1, 5).repeat(3, 1, 1, 1), padding=(0, 2), groups=3)
    blurred = F.conv2d(blurred, w.view(1, 1, 5, 1).repeat(3, 1, 1, 1), padding=(2, 0),
                       groups=3)
    pick = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    x = pick * blurred + (1 - pick) * x
    x = x + 0.16 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    x = x + torch.randn(x.shape, generator=gen) * 0.05 * torch.rand(n, 1, 1, 1, generator=gen)
    return x.clamp(-1, 1)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss; picture i's caption is text i; masked entries are left out."""
    n = img.shape[0]
    logits = (scale * img @ txt.T).float().masked_fill(mask, float("-inf"))
    target = torch.arange(n)
    to_text = F.cross_entropy(logits, target)
    to_image = F.cross_entropy(logits[:, :n].T, target)
    return (to_text + to_image) / 2


def ranking_loss(model: Any, tokenizer: Any, bank: dict[str, np.ndarray],
                 rng: random.Random, prompts: int) -> torch.Tensor:
    """Per caption, its right generated candidates above its wrong ones: cross-entropy over the
    caption's candidates with every right one a target (the log of their summed softmax)."""
    rows = rng.sample(range(len(bank["captions"])), min(prompts, len(bank["captions"])))
    images = bank["images"][rows]  # prompts x best_of x H x W x 3
    k = images.shape[1]
    x = torch.from_numpy(scorer.pixels(images.reshape(-1, *images.shape[2:])))
    ids = torch.from_numpy(scorer.token_ids(tokenizer, [str(c) for c in bank["captions"][rows]]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, pixel_values=x)
    img = F.normalize(out.image_embeds.float(), dim=-1).view(len(rows), k, -1)
    txt = F.normalize(out.text_embeds.float(), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * torch.einsum("pkd,pd->pk", img, txt)
    right = torch.from_numpy(bank["passed"][rows])
    return (logits.logsumexp(1) - logits.masked_fill(~right, float("-inf")).logsumexp(1)).mean()


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a run killed mid-write keeps the previous checkpoint


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = arch.build_tokenizer()
    if args.init_from:
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(str(args.init_from), dtype=torch.float32)
    else:
        model = scorer.build(len(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    ckpt = args.out / "ckpt.pt"
    step, log = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, log = state["step"], state["log"]
        print(f"resumed at step {step}", flush=True)
    mix = tuple(float(v) for v in args.mix.split(","))
    bank = dict(np.load(args.bank)) if args.bank else None
    t0, t_last = time.time(), time.time()
    model.train()
    while step < args.steps:
        rng = random.Random(args.seed * 1_000_003 + step)  # a resumed run sees the same data
        gen = torch.Generator().manual_seed(args.seed * 7919 + step)
        pictures, texts = make_batch(rng, args.batch, args.negatives, mix)
        images = np.stack([np.asarray(render(p, scorer.SIZE)) for p in pictures])
        x = augment(torch.from_numpy(scorer.pixels(images)), gen)
        ids = torch.from_numpy(scorer.token_ids(tokenizer, [t.caption for t in texts]))
        mask = truth_mask(pictures, texts)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (
            0.55 + 0.45 * math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, pixel_values=x)
        img = F.normalize(out.image_embeds.float(), dim=-1)
        txt = F.normalize(out.text_embeds.float(), dim=-1)
        loss = contrastive_loss(img, txt, model.logit_scale.exp().clamp(max=100), mask)
        if bank is not None:
            loss = loss + args.bank_weight * ranking_loss(model, tokenizer, bank, rng,
                                                          args.bank_prompts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.time() - t0
        if step % 20 == 0:
            print(f"step {step}/{args.steps} loss {loss.item():.4f} lr {lr:.2e} "
                  f"{(time.time() - t_last) / 20:.2f} s/step", flush=True)
            log.append({"step": step, "loss": round(loss.item(), 4)})
            t_last = time.time()
        out_of_time = bool(args.max_seconds and elapsed > args.max_seconds)
        if step % args.ckpt_every == 0 or step == args.steps or out_of_time:
            _save(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                         "log": log})
            scorer.save(model, tokenizer, args.out / "scorer")
            (args.out / "train_log.json").write_text(json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "step": step,
                 "log": log}, indent=1) + "\n")
        if out_of_time:
            print(f"stopping at step {step}: --max-seconds reached", flush=True)
            break
    if args.export:
        scorer.save(model, tokenizer, scorer.SHIPPED)
        print(f"exported to {scorer.SHIPPED}", flush=True)


if __name__ == "__main__":
    main()
