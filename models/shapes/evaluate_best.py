"""Best-of-k with the scorer, measured directly on the pipeline: pass rate against k.

    python -m models.shapes.evaluate_best --best-of 8 --steps 10 --save /tmp/cands.npz
    python -m models.shapes.evaluate_best --load /tmp/cands.npz --scorer runs/scorer/scorer

Draws `--best-of` candidates for every evaluation prompt (models.shapes.evaluate's fixed
prompts; candidate j of prompt i uses the seeds `best_of` uses in serving, models.scoring), then
reports, per caption kind and seen/held-out, the checker's pass rate when the scorer picks among
the first k candidates (k = 1, 2, 4, ... up to `--best-of`) and the oracle's (any candidate
passes).  `--save` keeps the candidates, so another scorer is judged without drawing again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from models.scoring import Scorer, candidate_seeds
from models.shapes.checker import check
from models.shapes.evaluate import eval_scenes, pipeline_generator
from models.shapes.scorer import SHIPPED
from models.shapes.scorer_eval import report


def draw(model: Path, per_cell: int, best_of: int, steps: int, guidance: float,
         cpu_autocast: bool = False) -> np.ndarray:
    """prompts x best_of x 64 x 64 x 3 candidates."""
    gen = pipeline_generator(model, steps, guidance, "cpu", cpu_autocast)
    scenes = eval_scenes(per_cell)
    out = np.empty((len(scenes), best_of, 64, 64, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    for i, (scene, _) in enumerate(scenes):
        seeds = candidate_seeds([1000 + i], best_of)
        images = gen([scene.caption] * best_of, seeds)
        out[i] = np.stack([np.asarray(im.convert("RGB")) for im in images])
        if i % 20 == 19:
            print(f"{i + 1}/{len(scenes)} prompts, {(time.perf_counter() - t0) / (i + 1):.2f} s "
                  "each", flush=True)
    return out


def curve(candidates: np.ndarray, per_cell: int, scorer: Scorer) -> dict[str, float]:
    scenes = eval_scenes(per_cell)
    ks = [k for k in (1, 2, 3, 4, 6, 8, 12, 16) if k <= candidates.shape[1]]
    rows: dict[str, list[dict[str, bool]]] = {}
    for (scene, held), cands in zip(scenes, candidates, strict=True):
        images = [Image.fromarray(c) for c in cands]
        ok = [check(im, scene) for im in images]
        scores = scorer.score(images, [scene.caption] * len(images))
        row = {f"best{k}": ok[int(np.argmax(scores[:k]))] for k in ks}
        row.update({f"oracle{k}": any(ok[:k]) for k in ks})
        rows.setdefault(f"{scene.kind}/{'held-out' if held else 'seen'}", []).append(row)
    table: dict[str, float] = {}
    for cell, items in rows.items():
        for key in items[0]:
            table[f"{key}/{cell}"] = sum(r[key] for r in items) / len(items)
    for key in next(iter(rows.values()))[0]:
        for group in ("seen", "held-out", ""):
            cells = [r[key] for c, items in rows.items() if c.endswith(group) for r in items]
            table[f"{key}/overall{'/' + group if group else ''}"] = sum(cells) / len(cells)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=Path(__file__).parent / "weights")
    p.add_argument("--scorer", type=Path, default=SHIPPED)
    p.add_argument("--per-cell", type=int, default=25)
    p.add_argument("--best-of", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", type=Path, help="keep the candidates here (.npz)")
    p.add_argument("--load", type=Path, help="judge saved candidates instead of drawing")
    p.add_argument("--cpu-autocast", action="store_true",
                   help="draw under bfloat16 autocast (as CPU workers do by default)")
    p.add_argument("--json", type=Path, help="also write the table here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.load:
        candidates = np.load(args.load)["candidates"]
    else:
        candidates = draw(args.model, args.per_cell, args.best_of, args.steps, args.guidance,
                          args.cpu_autocast)
        if args.save:
            np.savez_compressed(args.save, candidates=candidates)
    report(curve(candidates, args.per_cell, Scorer(args.scorer)), args.json)


if __name__ == "__main__":
    main()
