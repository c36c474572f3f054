"""Training data for the default model: rendered in parallel, reproducible from one seed."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from models.shapes.architecture import MAX_TOKENS
from models.shapes.world import DEFAULT_MIX, render_batch

_CHUNK = 2000


def _chunk(args: tuple[int, int, tuple[float, ...]]) -> tuple[np.ndarray, list[str]]:
    seed, count, mix = args
    return render_batch(seed, count, mix=mix)


def make_dataset(seed: int, count: int, workers: int,
                 mix: tuple[float, ...] = DEFAULT_MIX) -> tuple[np.ndarray, list[str]]:
    """`count` images (uint8 N x 64 x 64 x 3) and captions; chunk i uses seed * 100003 + i."""
    jobs = [(seed * 100003 + i, min(_CHUNK, count - i * _CHUNK), mix)
            for i in range((count + _CHUNK - 1) // _CHUNK)]
    images: list[np.ndarray] = []
    captions: list[str] = []
    if workers <= 1:
        results = map(_chunk, jobs)
        for im, cap in results:
            images.append(im)
            captions += cap
    else:
        with ProcessPoolExecutor(workers) as pool:
            for im, cap in pool.map(_chunk, jobs):
                images.append(im)
                captions += cap
    return np.concatenate(images), captions


def tokenize(tokenizer: Any, captions: list[str]) -> np.ndarray:
    """Token ids exactly as the diffusers pipelines tokenise prompts (padded to max length)."""
    ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                    return_tensors="np").input_ids
    return np.asarray(ids, dtype=np.int64)
