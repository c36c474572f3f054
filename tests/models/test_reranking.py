"""models/reranking.py on the embedded pipeline: best_of returns n images, each the candidate its
scorer ranks highest, from one pipeline call shared by several asks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.catalog import load_catalog
from models import rendering
from models.loading import load_pipeline
from models.reranking import Ask, generate_best
from models.scoring import candidate_seeds

PROMPT = "a red circle to the left of a blue square"


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load_pipeline(load_catalog(None).pipelines["shapes"])


def test_best_of_returns_n_images_each_its_best_candidate(loaded: Any) -> None:
    seeds, k = [11, 12], 3
    (drawn,) = generate_best(loaded, [Ask(PROMPT, seeds, k)], None, 4, 5.0, 64, 64)
    assert len(drawn.images) == 2 and drawn.seeds == seeds and drawn.scores is not None
    assert all(im.size == (64, 64) for im in drawn.images)  # native: scored as drawn
    # Every candidate drawn alone (best_of 1, their own seeds), scored by the same scorer.
    (alone,) = generate_best(loaded, [Ask(PROMPT, candidate_seeds(seeds, k))], None, 4, 5.0,
                             64, 64)
    scores = loaded.scorer.score(alone.images, [PROMPT] * len(alone.images))
    for i, chosen in enumerate(drawn.images):
        mine = [i + j * len(seeds) for j in range(k)]
        best = max(mine, key=scores.__getitem__)
        assert drawn.scores[i] == pytest.approx(scores[best], abs=0.05)
        assert drawn.scores[i] >= max(scores[c] for c in mine) - 0.05
        diff = np.abs(np.asarray(chosen, dtype=int) - np.asarray(alone.images[best], dtype=int))
        assert diff.mean() < 1.0


def test_asks_share_one_pipeline_call(loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = rendering.generate_prompts

    def counting(lp: Any, prompts: list[str], *a: Any, **k: Any) -> Any:
        calls.append(len(prompts))
        return real(lp, prompts, *a, **k)

    monkeypatch.setattr(rendering, "generate_prompts", counting)
    asks = [Ask("a red circle", [1]), Ask("two blue squares", [2, 3], 2)]
    plain, ranked = generate_best(loaded, asks, None, 3, 5.0, 64, 64)
    assert calls == [5]
    assert (len(plain.images), plain.scores) == (1, None)
    assert len(ranked.images) == 2 and ranked.scores is not None


def test_a_ranked_stream_previews_the_leading_candidate(loaded: Any) -> None:
    shown: list[int] = []
    generate_best(loaded, [Ask(PROMPT, [4], 3)], None, 6, 5.0, 64, 64, partials=2,
                  on_partial=lambda i, im: shown.append(i))
    assert shown == [0, 1]
