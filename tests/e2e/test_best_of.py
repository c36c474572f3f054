"""best_of through a real gateway and worker (the session stack, default catalog): each image is
the candidate the shapes scorer ranks highest, the contract bounds the field, and /v1/models
says what a model takes."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
from PIL import Image

from models.scoring import CANDIDATE_STRIDE, Scorer
from models.shapes.scorer import SHIPPED
from tests.conftest import Stack

PROMPT = "a red circle to the left of a blue square"


def _generate(stack: Stack, **fields: Any) -> httpx.Response:
    body = {"model": "easel-shapes", "prompt": PROMPT, "size": "64x64", "steps": 4,
            "response_format": "b64_json", **fields}
    return httpx.post(f"{stack.base_url}/v1/images/generations", json=body, timeout=180)


def _image(item: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB")


def test_best_of_returns_the_best_scored_candidate(stack: Stack) -> None:
    r = _generate(stack, best_of=3, seed=40)
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]
    assert item["seed"] == 40  # the image's seed: the same request draws the same image
    chosen = _image(item)
    # The three candidates, each drawn alone from its own seed (models.scoring).
    candidates = []
    for j in range(3):
        alone = _generate(stack, best_of=1, seed=40 + j * CANDIDATE_STRIDE)
        assert alone.status_code == 200, alone.text
        candidates.append(_image(alone.json()["data"][0]))
    assert len({c.tobytes() for c in candidates}) == 3  # three different pictures to rank
    scores = Scorer(SHIPPED).score([chosen, *candidates], [PROMPT] * 4)
    best = int(np.argmax(scores[1:]))
    diff = np.abs(np.asarray(chosen, dtype=int) - np.asarray(candidates[best], dtype=int))
    assert diff.mean() < 1.0 and scores[0] >= max(scores[1:]) - 0.1, scores


def test_n_images_each_ranked(stack: Stack) -> None:
    r = _generate(stack, best_of=2, n=2, seed=7)
    assert r.status_code == 200, r.text
    assert [d["seed"] for d in r.json()["data"]] == [7, 8]


def test_best_of_is_bounded_and_named(stack: Stack) -> None:
    for fields in ({"best_of": 0}, {"best_of": 17}, {"best_of": 4, "n": 10}):
        r = _generate(stack, **fields)
        assert r.status_code == 400 and r.json()["error"]["param"] == "best_of", r.text
    model = httpx.get(f"{stack.base_url}/v1/models/easel-shapes").json()
    assert model["easel"]["best_of"]["max"] == 16 and model["easel"]["best_of"]["default"] > 1
