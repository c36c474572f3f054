"""Best-of-k generation: one pipeline call draws every candidate, the pipeline's scorer keeps
the best per image (DALL·E 1's reranking with CLIP).

Several *asks* (one per job of a cross-request batch) share the call; each has its own prompt,
seeds and `best_of`.  An image's candidates are drawn from its own seed (models.scoring), so the
same seed and `best_of` give the same image again, and candidate 0 is the image `best_of` 1
draws.  Only the chosen images are resized to the requested size.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from models import rendering
from models.loading import LoadedPipeline
from models.scoring import best_indices, candidate_seeds
from models.step_callbacks import Lead, OnPartial


@dataclass(frozen=True)
class Ask:
    """One job's share of a pipeline call."""

    prompt: str
    seeds: list[int]
    best_of: int = 1


@dataclass(frozen=True)
class Drawn:
    images: list[Image.Image]
    seeds: list[int]  # each image's seed (the request's; its candidates derive from it)
    scores: list[float] | None  # the scorer's similarity of each to the prompt (ranked asks)


def _lead(loaded: LoadedPipeline, prompt: str) -> Lead:
    """For previews of a ranked stream: the candidate the scorer likes best so far."""
    def lead(previews: list[Image.Image]) -> int:
        scores = loaded.scorer.score(previews, [prompt] * len(previews))
        return max(range(len(previews)), key=scores.__getitem__)

    return lead


def generate_best(loaded: LoadedPipeline, asks: list[Ask], negative_prompt: str | None,
                  steps: int, guidance: float, width: int, height: int, partials: int = 0,
                  on_partial: OnPartial | None = None) -> list[Drawn]:
    """Every ask's images, each the best of its `best_of` candidates, from one pipeline call."""
    ranked = any(a.best_of > 1 for a in asks)
    if ranked and loaded.scorer is None:
        raise RuntimeError(f"pipeline {loaded.spec.name} has no scorer: best_of needs one")
    prompts: list[str] = []
    seeds: list[int] = []
    for a in asks:
        drawn = candidate_seeds(a.seeds, a.best_of)
        prompts += [a.prompt] * len(drawn)
        seeds += drawn
    lead = _lead(loaded, asks[0].prompt) if ranked and partials and len(asks) == 1 else None
    images = rendering.generate_prompts(loaded, prompts, negative_prompt, seeds, steps, guidance,
                                        width, height, partials, on_partial, fit=False,
                                        lead=lead)
    out: list[Drawn] = []
    at = 0
    for a in asks:
        count = len(a.seeds) * a.best_of
        mine = images[at:at + count]
        at += count
        if a.best_of == 1:
            out.append(Drawn(rendering.fit_all(mine, width, height), list(a.seeds), None))
            continue
        scores = loaded.scorer.score(mine, [a.prompt] * count)
        best = best_indices(scores, len(a.seeds), a.best_of)
        out.append(Drawn(rendering.fit_all([mine[b] for b in best], width, height),
                         list(a.seeds), [scores[b] for b in best]))
    return out
