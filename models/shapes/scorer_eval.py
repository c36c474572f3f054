"""How well the contrastive scorer tells a true caption from its near misses.

    python -m models.shapes.scorer_eval [--scorer models/shapes/scorer] [--per-cell 100]

Two numbers per caption kind, for seen and held-out colour-shape pairs (the scorer never saw the
held-out ones):
- caption accuracy: the true caption ranks first among *all* its near misses
  (models/shapes/negatives.py: other colours, shapes, swapped colours, opposite position or
  relation, other counts; held-out pairs allowed here), for a rendered picture;
- picture accuracy: for a caption, its picture beats a twin one edit away (what reranking needs:
  the candidates compete for one caption).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from models.scoring import Scorer
from models.shapes.negatives import negative_claims, twin
from models.shapes.scorer import SHIPPED
from models.shapes.world import KINDS, render, sample_scene


def accuracy(scorer: Scorer, per_cell: int, seed: int = 11) -> dict[str, float]:
    rng = random.Random(seed)
    table: dict[str, float] = {}
    for kind in KINDS:
        for held in (False, True):
            right_caption, right_picture, pictures = 0, 0, 0
            for _ in range(per_cell):
                scene = sample_scene(rng, kind, held)
                image = render(scene)
                captions = [scene.caption] + [c.caption for c in
                                              negative_claims(scene, held_out_ok=True)]
                sims = scorer.similarity([image], captions)[0]
                right_caption += int(np.argmax(sims) == 0)
                other = next((t for t in (twin(rng, scene) for _ in range(8)) if t), None)
                if other is not None:
                    s = scorer.similarity([image, render(other)], [scene.caption])[:, 0]
                    right_picture += int(s[0] > s[1])
                    pictures += 1
            cell = f"{kind}/{'held-out' if held else 'seen'}"
            table[f"caption/{cell}"] = right_caption / per_cell
            table[f"picture/{cell}"] = right_picture / max(1, pictures)
    for what in ("caption", "picture"):
        for group in ("seen", "held-out"):
            cells = [v for k, v in table.items() if k.startswith(what) and k.endswith(group)]
            table[f"{what}/overall/{group}"] = sum(cells) / len(cells)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scorer", type=Path, default=SHIPPED)
    p.add_argument("--per-cell", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the table here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    report(accuracy(Scorer(args.scorer), args.per_cell), args.json)


def report(table: dict[str, float], json_path: Path | None) -> None:
    """A result table on stdout, and as JSON in `json_path` when given."""
    for k, v in table.items():
        print(f"{k:32s} {v:.3f}")
    if json_path:
        json_path.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
