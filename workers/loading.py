"""Load a worker's pipelines one by one: a pipeline that fails is reported, never fatal.

A checkpoint mistake (models.checks) fails at once; other errors (a busy disk, a GPU out of
memory for a moment) are tried `ATTEMPTS` times. The pipelines that loaded are served; the
failed ones go into the worker's heartbeat with their message, for `/readyz`, the API's 503
for their models and `easel up`'s start-up output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.catalog import PipelineSpec

log = logging.getLogger("easel.worker")
ATTEMPTS = 3


def load_with_retries(load: Callable[[PipelineSpec], Any], spec: PipelineSpec,
                      attempts: int = ATTEMPTS, backoff: float = 1.0) -> Any:
    from models.checks import CheckpointError

    for attempt in range(1, attempts + 1):
        try:
            return load(spec)
        except (CheckpointError, FileNotFoundError):  # the same again on every attempt
            raise
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("pipeline %s: load attempt %d of %d failed: %s; trying again",
                        spec.name, attempt, attempts, exc)
            time.sleep(backoff * attempt)
    raise AssertionError("unreachable")


def load_all(specs: list[PipelineSpec], load: Callable[[PipelineSpec], Any],
             budget_mb: int = 0, backoff: float = 1.0) -> tuple[dict[str, Any], dict[str, str]]:
    """(loaded pipelines by name, failure message by name), in the configured order, while
    they fit in the memory budget."""
    pipelines: dict[str, Any] = {}
    failed: dict[str, str] = {}
    used = 0
    for spec in specs:
        try:
            loaded = load_with_retries(load, spec, backoff=backoff)
        except Exception as exc:
            reason = str(exc).strip() or type(exc).__name__
            failed[spec.name] = f"pipeline {spec.name} failed to load: {reason}"
            log.error(failed[spec.name], extra={"pipeline": spec.name})
            continue
        size = loaded.weight_bytes()
        if budget_mb and pipelines and used + size > budget_mb * 2**20:
            log.warning("pipeline %s (%d MB) does not fit the %d MB budget; not serving it",
                        spec.name, size // 2**20, budget_mb)
            del loaded
            continue
        pipelines[spec.name] = loaded
        used += size
    return pipelines, failed

