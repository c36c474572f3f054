"""Easel's `best_of` extension: how many candidates each image of a generation is drawn from.

A pipeline whose catalog entry names a `scorer` (a small CLIP) draws `best_of` candidates per
image and keeps the ones that match the prompt best, as DALL·E 1 reranked with CLIP.  For such a
pipeline `quality` means the number of candidates (core.rules.QUALITY_BEST_OF); a request may
also set it directly.  Pipelines without a scorer refuse the field with a 400 naming it.
"""

from __future__ import annotations

from typing import Any

from core.catalog import PipelineSpec
from core.errors import bad_request
from core.rules import MAX_BEST_OF, MAX_CANDIDATES, QUALITY_BEST_OF, Operation, Quality


def best_of_ranks(pipe: PipelineSpec, kind: Operation) -> bool:
    """Whether requests of `kind` on `pipe` draw candidates and rank them: generations on a
    pipeline with a scorer (edits and variations render one image per seed)."""
    return kind == "generate" and bool(pipe.scorer)


def chosen_best_of(req: Any, pipe: PipelineSpec, quality: Quality, n: int, kind: Operation,
                   model: str) -> int:
    """Candidates per image: the request's `best_of`, else what `quality` means for the
    pipeline, kept within MAX_CANDIDATES for the whole request."""
    asked: int | None = getattr(req, "best_of", None)
    if not best_of_ranks(pipe, kind):
        if asked is not None:
            raise bad_request(f"'best_of' is not supported for model '{model}': its pipeline has "
                              "no scorer to rank candidates with.", "best_of",
                              "unsupported_parameter")
        return 1
    if asked is not None:
        if n * asked > MAX_CANDIDATES:
            raise bad_request(f"Invalid value for 'best_of': n x best_of is {n * asked}; at most "
                              f"{MAX_CANDIDATES} candidates are drawn per request.", "best_of",
                              "invalid_value")
        return int(asked)
    implied = max(1, round(pipe.best_of * QUALITY_BEST_OF[quality]))
    return max(1, min(implied, MAX_BEST_OF, MAX_CANDIDATES // n))
