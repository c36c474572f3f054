"""models/scoring.py and the shipped shapes scorer (models/shapes/scorer/): a standard CLIPModel
folder that ranks a rendered scene's true caption above its near misses."""

from __future__ import annotations

import random
from typing import Any

import pytest

from models.scoring import CANDIDATE_STRIDE, Scorer, best_indices, candidate_seeds
from models.shapes.negatives import holds, negative_claims, twin
from models.shapes.scorer import SHIPPED
from models.shapes.world import HELD_OUT, KINDS, render, sample_scene


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(SHIPPED)


def test_candidates_derive_from_each_image_seed() -> None:
    assert candidate_seeds([7, 8], 3) == [7, 8, 7 + CANDIDATE_STRIDE, 8 + CANDIDATE_STRIDE,
                                          7 + 2 * CANDIDATE_STRIDE, 8 + 2 * CANDIDATE_STRIDE]
    assert candidate_seeds([5], 1) == [5]  # best_of 1 is the plain image
    assert candidate_seeds([2**63 - 1], 2)[1] == CANDIDATE_STRIDE - 1  # wraps like seeds do
    # Every candidate draws different noise (torch's CPU generator reads a seed's low 32 bits).
    import torch

    noise = {tuple(torch.randn(4, generator=torch.Generator().manual_seed(s)).tolist())
             for s in candidate_seeds([2**40 + 3, 2**40 + 4], 16)}
    assert len(noise) == 32
    # image 0's candidates are indices 0, 2, 4; image 1's 1, 3, 5; ties go to the earliest
    assert best_indices([0.1, 0.9, 0.5, 0.2, 0.5, 0.3], n=2, best_of=3) == [2, 1]


def test_the_shipped_scorer_is_a_small_standard_clip() -> None:
    import torch
    from transformers import CLIPModel

    model: Any = CLIPModel.from_pretrained(str(SHIPPED), dtype=torch.float32)
    assert model.config.vision_config.image_size == 64
    size = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert size < 8 * 2**20, size


def test_true_captions_outrank_their_hard_negatives(scorer: Scorer) -> None:
    rng = random.Random(5)
    wins, total = 0, 0
    for kind in KINDS:
        for _ in range(6):
            scene = sample_scene(rng, kind)
            near = [c.caption for c in negative_claims(scene)]
            sims = scorer.similarity([render(scene)], [scene.caption, *near])[0]
            wins += int(sims[0] > sims[1:].max())
            total += 1
    assert wins >= 0.6 * total, f"{wins}/{total}"  # all near misses at once: MODEL_CARD


def test_a_caption_prefers_its_picture_to_a_twin(scorer: Scorer) -> None:
    """What reranking relies on: one caption, candidate pictures one edit apart."""
    rng = random.Random(9)
    wins, total = 0, 0
    while total < 24:
        scene = sample_scene(rng, KINDS[total % 4])
        other = twin(rng, scene)
        if other is None:
            continue
        s = scorer.similarity([render(scene), render(other)], [scene.caption])[:, 0]
        wins += int(s[0] > s[1])
        total += 1
    assert wins >= 0.85 * total, f"{wins}/{total}"


def test_hard_negatives_are_false_and_never_held_out() -> None:
    rng = random.Random(3)
    for i in range(400):
        scene = sample_scene(rng, KINDS[i % 4])
        assert holds(scene, scene.objects)
        for c in negative_claims(scene):
            assert not holds(c, scene.objects), (scene.caption, c.caption)
            assert all((o.colour, o.shape) not in HELD_OUT for o in c.objects), c.caption
        other = twin(rng, scene)
        if other is not None:
            assert not holds(other, scene.objects) and holds(other, other.objects)
            assert all((o.colour, o.shape) not in HELD_OUT for o in other.objects)


def test_ranking_on_generated_candidates_learns_the_right_one() -> None:
    """train_scorer's second loss: per caption, its right candidates above its wrong ones.
    A few steps on a bank of (caption, right picture, twin one edit away) lower it."""
    import numpy as np
    import torch

    from models.shapes import architecture as arch
    from models.shapes import scorer as shapes_scorer
    from models.shapes.candidate_bank import draws_held_out
    from models.shapes.train_scorer import ranking_loss

    rng = random.Random(3)
    captions, images = [], []
    while len(captions) < 8:
        scene = sample_scene(rng, "pair")
        other = twin(rng, scene)
        if other is not None:
            captions.append(scene.caption)
            images.append(np.stack([np.asarray(render(scene)), np.asarray(render(other))]))
    bank = {"captions": np.array(captions), "images": np.stack(images),
            "passed": np.array([[True, False]] * len(captions))}
    assert not any(draws_held_out(render(sample_scene(rng, "pair"))) for _ in range(20))
    assert draws_held_out(render(sample_scene(rng, "single", held_out=True)))
    torch.manual_seed(0)
    tokenizer = arch.build_tokenizer()
    model = shapes_scorer.build(len(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = ranking_loss(model, tokenizer, bank, random.Random(0), 8)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(2), abs=0.3)  # two candidates, no preference yet
    assert losses[-1] < losses[0] * 0.7
