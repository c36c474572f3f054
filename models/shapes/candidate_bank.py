"""Generated candidates for the scorer to learn from: the model's own near misses.

    python -m models.shapes.candidate_bank --out runs/bank.npz --prompts 600 --best-of 4

Renders of the world (what train_scorer draws) are crisp and exactly right or exactly wrong; the
generator's pictures are soft, and wrong in its own ways (a pair's sides swapped, a square
rounded into a circle, a fourth object missing).  Reranking has to tell those apart, so this
draws `--best-of` candidates per training prompt with the served sampler and keeps each prompt
whose candidates the world's exact reader (models.shapes.checker) splits into right and wrong.
train_scorer then teaches the scorer, per caption, to rank its right candidates above its wrong
ones.

Held-out colour-shape pairs stay out: prompts come from seen pairs only, and a candidate in
which any held-out pair was drawn is dropped.  Prompts use another seed than the evaluation's,
and their seeds are far from the evaluation's (1000 + i).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from models.scoring import candidate_seeds
from models.shapes.checker import check, segment
from models.shapes.world import HELD_OUT, KINDS, sample_scene

BANK_SEED = 20261130  # prompts; never the evaluation's (models.shapes.evaluate.eval_scenes)
FIRST_IMAGE_SEED = 10_000_000


def draws_held_out(image: Image.Image) -> bool:
    """Whether the world's reader finds a held-out colour-shape pair in the picture."""
    return any((f.colour, f.shape) in HELD_OUT for f in segment(image))


def build(model: Path, prompts: int, best_of: int, steps: int, guidance: float,
          mix: tuple[float, ...]) -> dict[str, np.ndarray]:
    import torch
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(model.resolve()), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rng = random.Random(BANK_SEED)
    captions, images, passed = [], [], []
    t0 = time.perf_counter()
    for i in range(prompts):
        scene = sample_scene(rng, rng.choices(KINDS, weights=mix)[0])
        seeds = candidate_seeds([FIRST_IMAGE_SEED + i], best_of)
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            drawn = pipe([scene.caption] * best_of, num_inference_steps=steps,
                         guidance_scale=guidance, generator=gens).images
        kept = [im for im in drawn if not draws_held_out(im)]
        verdicts = [check(im, scene) for im in kept]
        if len(kept) == best_of and any(verdicts) and not all(verdicts):
            captions.append(scene.caption)
            images.append(np.stack([np.asarray(im.convert("RGB")) for im in kept]))
            passed.append(verdicts)
        if i % 50 == 49:
            print(f"{i + 1}/{prompts} prompts, {len(captions)} kept, "
                  f"{(time.perf_counter() - t0) / (i + 1):.2f} s/prompt", flush=True)
    return {"captions": np.array(captions), "images": np.stack(images),
            "passed": np.array(passed, dtype=bool)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=Path(__file__).parent / "weights")
    p.add_argument("--prompts", type=int, default=600)
    p.add_argument("--best-of", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--mix", default="0.1,0.2,0.45,0.25", help="single,position,pair,count")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bank = build(args.model, args.prompts, args.best_of, args.steps, args.guidance,
                 tuple(float(v) for v in args.mix.split(",")))
    np.savez_compressed(args.out, captions=bank["captions"], images=bank["images"],
                        passed=bank["passed"])
    print(f"{len(bank['captions'])} prompts with right and wrong candidates -> {args.out}")


if __name__ == "__main__":
    main()
