"""models/adapters.py: LoRA adapters loaded under their names into the resident pipeline,
switched per call with set_adapters, kept least recently used first out; never mixed in a batch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.adapters import AdapterSpec
from core.catalog import load_catalog
from core.jobs import AdapterUse, RenderJob
from models import rendering
from models.adapters import AdapterError
from models.loading import LoadedPipeline, load_pipeline, resolve_path
from workers.batching import adapter_set, batch_key

CATALOG = load_catalog(None)


@pytest.fixture(scope="module")
def shapes() -> LoadedPipeline:
    loaded = load_pipeline(CATALOG.pipelines["shapes"])
    loaded.attach_adapters(CATALOG.adapters_of("shapes"), 0)
    return loaded


def _render(loaded: LoadedPipeline, loras: tuple[tuple[str, float], ...]) -> np.ndarray:
    with loaded.use_adapters(loras):
        images = rendering.generate_prompts(loaded, ["a red circle"], None, [7], 6, 5.0, 64, 64)
    return np.asarray(images[0], dtype=np.int16)


def test_the_shipped_adapter_is_small_and_preloaded(shapes: LoadedPipeline) -> None:
    size = Path(resolve_path("embedded:shapes-outline")).stat().st_size
    assert size < 4_000_000
    assert shapes.adapters is not None and list(shapes.adapters.resident) == ["outline"]


def test_switching_adapters_changes_the_picture_and_back_exactly(
        shapes: LoadedPipeline) -> None:
    base = _render(shapes, ())
    outlined = _render(shapes, (("outline", 1.0),))
    assert np.abs(base - outlined).mean() > 3
    assert (_render(shapes, ()) == base).all()  # disable_lora: the base weights, untouched
    assert (_render(shapes, (("outline", 1.0),)) == outlined).all()
    half = _render(shapes, (("outline", 0.5),))  # the scale counts: neither of the two
    assert np.abs(base - half).mean() > 1 and np.abs(outlined - half).mean() > 1


def _wrappers(loaded: LoadedPipeline) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) for m in loaded.text2img.unet.modules())


def test_no_adapter_in_use_renders_without_the_wrappers(shapes: LoadedPipeline) -> None:
    """While no adapter is in use the base layers run bare (peft's per-layer overhead gone),
    with exactly the pixels of a pipeline that never loaded one; an adapter brings them back."""
    plain = load_pipeline(CATALOG.pipelines["shapes"])
    never = _render(plain, ())
    outlined = _render(shapes, (("outline", 1.0),))
    wrapped = _wrappers(shapes)
    assert wrapped > 50
    assert (_render(shapes, ()) == never).all()
    assert _wrappers(shapes) == 0
    assert (_render(shapes, (("outline", 1.0),)) == outlined).all()
    assert _wrappers(shapes) == wrapped


def test_unknown_adapters_are_refused(shapes: LoadedPipeline) -> None:
    with pytest.raises(AdapterError, match="'nope' is not in the catalog"):
        _render(shapes, (("nope", 1.0),))
    assert (_render(shapes, ()) == _render(shapes, ())).all()  # still usable


def test_least_recently_used_adapters_leave_first_within_the_budget() -> None:
    loaded = load_pipeline(CATALOG.pipelines["shapes"])
    size = Path(resolve_path("embedded:shapes-outline")).stat().st_size
    specs = [AdapterSpec(n, "embedded:shapes-outline", ("shapes",)) for n in ("a", "b", "c")]
    loaded.attach_adapters(specs, size * 2)  # room for two
    cache: Any = loaded.adapters
    assert list(cache.resident) == ["a", "b"]  # preloaded in catalog order while they fit
    cache.activate((("a", 1.0),))
    cache.activate((("c", 1.0),))  # loads c, drops b (used longest ago)
    assert list(cache.resident) == ["a", "c"]
    cache.activate((("b", 1.0), ("c", 1.0)))  # both needed now: a goes
    assert sorted(cache.resident) == ["b", "c"]


def test_jobs_with_other_adapters_or_scales_never_share_a_batch() -> None:
    def job(*loras: tuple[str, float]) -> RenderJob:
        return RenderJob(job_id="j", model="easel-shapes", pipeline="shapes", width=64,
                         height=64, n=1, seeds=[1], steps=4, guidance=5.0,
                         loras=[AdapterUse(name=n, scale=s) for n, s in loras])

    plain, outlined = job(), job(("outline", 1.0))
    assert batch_key(plain) != batch_key(outlined)
    assert batch_key(outlined) != batch_key(job(("outline", 0.5)))
    assert batch_key(outlined) == batch_key(job(("outline", 1.0)))
    assert adapter_set(job(("b", 1.0), ("a", 0.5))) == (("a", 0.5), ("b", 1.0))


def test_a_corrupt_adapter_file_is_named_and_the_rest_serve(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bad file fails at start with a message naming adapter, pipeline and reason (the log
    adds the file); the pipeline and its good adapter render on, and a request for the bad one
    fails at once, without trying the file again."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")  # header length, then junk
    loaded = load_pipeline(CATALOG.pipelines["shapes"])
    specs = [AdapterSpec("outline", "embedded:shapes-outline", ("shapes",)),
             AdapterSpec("bad", str(bad), ("shapes",))]
    with caplog.at_level(logging.ERROR, "easel.models"):
        loaded.attach_adapters(specs, 0)
    cache: Any = loaded.adapters
    assert list(cache.resident) == ["outline"]
    why = cache.failed["bad"]
    assert why.startswith("adapter bad for pipeline shapes failed to load: ") and "\n" not in why
    assert str(bad) not in why  # clients see the message; the log names the file
    assert why in caplog.text and str(bad) in caplog.text
    calls: list[str] = []
    real = loaded.text2img.load_lora_weights
    loaded.text2img.load_lora_weights = lambda *a, **k: (calls.append("load"), real(*a, **k))
    with pytest.raises(AdapterError) as info:
        _render(loaded, (("outline", 1.0), ("bad", 1.0)))
    assert str(info.value) == why and calls == []
    assert np.abs(_render(loaded, (("outline", 1.0),)) - _render(loaded, ())).mean() > 3
    cache.respec(specs)  # a catalog reload that keeps the entry keeps the failure
    assert cache.failed == {"bad": why}
    cache.respec(specs[:1])  # one that drops or changes it forgets it
    assert cache.failed == {}
