"""LoRA adapters per request through a real gateway and worker (the session stack, default
catalog): the shipped `outline` adapter draws hollow shapes where the base model fills them,
concurrent requests mixing adapter sets get the pictures they get alone, and bad `loras` are 400s.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from statistics import mean
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from models.shapes.checker import hollowness
from tests.conftest import Stack

OUTLINE = [{"name": "outline", "scale": 1.0}]


def _render(stack: Stack, seed: int, loras: list[dict[str, Any]] | None,
            prompt: str = "a red circle", steps: int = 12) -> list[np.ndarray]:
    # quality low: one candidate per image (no reranking), the adapter's effect alone.
    body: dict[str, Any] = {"model": "easel-shapes", "prompt": prompt, "size": "64x64",
                            "response_format": "b64_json", "seed": seed, "steps": steps, "n": 2,
                            "quality": "low"}
    if loras is not None:
        body["loras"] = loras
    r = httpx.post(f"{stack.base_url}/v1/images/generations", json=body, timeout=180)
    assert r.status_code == 200, r.text
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))).convert("RGB"))
            for d in r.json()["data"]]


def test_models_list_the_adapters(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v1/models/easel-shapes")
    adapters = r.json()["easel"]["adapters"]
    assert [a["name"] for a in adapters] == ["outline"] and adapters[0]["scale"] == 1.0


def test_the_outline_adapter_draws_hollow_shapes(stack: Stack) -> None:
    """The trained effect, measured: the white share inside the drawn shapes' outlines."""
    prompts = ["a red circle", "a blue square", "a green triangle"]
    base = [hollowness(Image.fromarray(im)) for i, p in enumerate(prompts)
            for im in _render(stack, 100 + i, None, p, steps=20)]
    lora = [hollowness(Image.fromarray(im)) for i, p in enumerate(prompts)
            for im in _render(stack, 100 + i, OUTLINE, p, steps=20)]
    assert mean(base) < 0.05, base
    assert mean(lora) > 0.15 and mean(lora) > 4 * mean(base), (base, lora)


def test_concurrent_requests_mixing_adapter_sets_match_them_alone(stack: Stack) -> None:
    """8 requests at once, half with the adapter: batching groups them by adapter set, so each
    gets the pictures it gets when sent alone (within the batching tolerance, docs/api.md)."""
    plan = [(300 + i, OUTLINE if i % 2 else None) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: _render(stack, *p), plan))
    alone = [_render(stack, *p) for p in plan]
    for (seed, loras), got, want in zip(plan, together, alone, strict=True):
        for a, b in zip(got, want, strict=True):
            diff = np.abs(a.astype(int) - b.astype(int))
            assert diff.max() <= 12 and diff.mean() < 1.0, (seed, loras, diff.max())
    # And the adapter made a difference: the same seed with and without it differs.
    plain, outlined = _render(stack, 300, None), _render(stack, 300, OUTLINE)
    assert np.abs(plain[0].astype(int) - outlined[0].astype(int)).mean() > 5


@pytest.mark.parametrize("loras,param", [
    ([{"name": "nope"}], "loras[0].name"),
    ([{"name": "outline", "scale": 9}], "loras[0].scale"),
    ([{"name": "outline"}] * 5, "loras"),
    ("outline", "loras"),
])
def test_bad_loras_are_400s(stack: Stack, loras: Any, param: str) -> None:
    r = httpx.post(f"{stack.base_url}/v1/images/generations",
                   json={"prompt": "a red circle", "loras": loras})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_a_multipart_edit_takes_loras_as_json_text(stack: Stack) -> None:
    image = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(image, "PNG")
    r = httpx.post(f"{stack.base_url}/v1/images/edits", timeout=180,
                   data={"model": "easel-shapes", "prompt": "a red circle", "size": "64x64",
                         "steps": "4", "response_format": "b64_json",
                         "loras": '[{"name": "outline", "scale": 0.5}]'},
                   files={"image": ("in.png", image.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    bad = httpx.post(f"{stack.base_url}/v1/images/edits",
                     data={"model": "easel-shapes", "prompt": "x", "loras": "outline"},
                     files={"image": ("in.png", image.getvalue(), "image/png")})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "loras"
