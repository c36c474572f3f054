"""A worker's pipelines load one by one: failures are retried a few times, then reported."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from core.catalog import PipelineSpec
from models.checks import CheckpointError
from workers.loading import ATTEMPTS, load_all


def test_a_failed_pipeline_never_takes_the_others_down() -> None:
    calls: dict[str, int] = {}

    def load(spec: PipelineSpec) -> Any:
        calls[spec.name] = calls.get(spec.name, 0) + 1
        if spec.name == "bad-folder":
            raise CheckpointError("component 'vae' (AutoencoderKL) is missing")
        if spec.name == "broken":
            raise RuntimeError("CUDA out of memory")
        if spec.name == "flaky" and calls[spec.name] < 2:
            raise OSError("disk busy")
        return SimpleNamespace(weight_bytes=lambda: 1)

    specs = [PipelineSpec(name=n, path="x") for n in ("bad-folder", "good", "broken", "flaky")]
    pipelines, failed = load_all(specs, load, backoff=0)
    assert list(pipelines) == ["good", "flaky"]
    assert failed == {
        "bad-folder": "pipeline bad-folder failed to load: component 'vae' (AutoencoderKL) "
                      "is missing",
        "broken": "pipeline broken failed to load: CUDA out of memory"}
    # A checkpoint mistake fails the same way every time: tried once; others a few times.
    assert calls == {"bad-folder": 1, "good": 1, "broken": ATTEMPTS, "flaky": 2}


def test_the_budget_still_applies() -> None:
    big = SimpleNamespace(weight_bytes=lambda: 60 * 2**20)
    specs = [PipelineSpec(name=n, path="x") for n in ("a", "b")]
    pipelines, failed = load_all(specs, lambda spec: big, budget_mb=100)
    assert list(pipelines) == ["a"] and not failed

