"""Pipeline loading: embedded paths, missing folders, and the GPU tuning switches on CPU."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog import PipelineSpec, load_catalog
from models import rendering
from models.loading import Tuning, load_pipeline, resolve_path


def test_paths() -> None:
    assert resolve_path("embedded:shapes").endswith("models/shapes/weights")
    with pytest.raises(FileNotFoundError):
        resolve_path("./no/such/folder")
    assert resolve_path("org/some-model") == "org/some-model"  # a Hub id, loaded from the cache


def test_tuning_switches_keep_the_output() -> None:
    spec: PipelineSpec = load_catalog(None).pipelines["shapes"]
    plain = load_pipeline(spec)
    tuned = load_pipeline(spec, tuning=Tuning(channels_last=True, vae_tiling=True,
                                              vae_slicing=True))
    args = ("a red circle", None, [1, 2], 4, 5.0, 64, 64)
    a = [np.asarray(i, dtype=np.int16) for i in rendering.generate(plain, *args)]
    b = [np.asarray(i, dtype=np.int16) for i in rendering.generate(tuned, *args)]
    for x, y in zip(a, b, strict=True):
        assert np.abs(x - y).max() <= 2  # a different memory layout, the same picture


def test_cpu_autocast_renders_in_bfloat16_with_the_same_picture() -> None:
    import torch

    from models.loading import cpu_has_bf16

    spec: PipelineSpec = load_catalog(None).pipelines["shapes"]
    plain = load_pipeline(spec)
    fast = load_pipeline(spec, tuning=Tuning(cpu_autocast=True))
    assert not plain.autocast
    assert fast.autocast == cpu_has_bf16()  # never on a CPU where bfloat16 is emulated
    assert not load_pipeline(spec, dtype="bfloat16", tuning=Tuning(cpu_autocast=True)).autocast
    with fast.running():
        assert torch.is_autocast_cpu_enabled() == fast.autocast
    assert not torch.is_autocast_cpu_enabled()
    from models.shapes.checker import segment

    args = ("a blue square to the left of a red circle", None, [1, 2, 3], 20, 5.0, 64, 64)
    a, b = rendering.generate(plain, *args), rendering.generate(fast, *args)
    # Rounding moves an edge or a centre a little; the same objects are drawn in the same places.
    for x, y in zip(a, b, strict=True):
        seen, drawn = segment(x), segment(y)
        assert sorted((f.colour, f.shape) for f in seen) == sorted((f.colour, f.shape)
                                                                    for f in drawn)
        for f in seen:
            assert min(abs(f.cx - g.cx) + abs(f.cy - g.cy) for g in drawn) < 0.08
    if fast.autocast:  # it did render differently: autocast was on
        assert any(np.asarray(x).tobytes() != np.asarray(y).tobytes() for x, y in
                   zip(a, b, strict=True))


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
def test_batched_pictures_are_the_solo_ones_within_the_published_tolerance(
        autocast: bool) -> None:
    """docs/api.md (`seed`): a request batched with others draws what it draws alone. Float32
    rounds the wider product differently by a level or so; bfloat16 autocast rounds coarser,
    so an edge moves here and there, but the same objects stand in the same places."""
    from models.loading import cpu_has_bf16
    from models.shapes.checker import segment

    if autocast and not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16: the worker never autocasts here")
    spec: PipelineSpec = load_catalog(None).pipelines["shapes"]
    loaded = load_pipeline(spec, tuning=Tuning(cpu_autocast=autocast))
    assert loaded.autocast == autocast
    prompts = ["a red circle to the left of a blue square", "three green triangles",
               "a yellow square at the top", "a purple circle above a cyan triangle"]
    seeds = [11, 12, 13, 14]
    together = rendering.generate_prompts(loaded, prompts, None, seeds, 20, 5.0, 64, 64)
    for prompt, seed, batched in zip(prompts, seeds, together, strict=True):
        (alone,) = rendering.generate_prompts(loaded, [prompt], None, [seed], 20, 5.0, 64, 64)
        diff = np.abs(np.asarray(alone, dtype=int) - np.asarray(batched, dtype=int)).max(axis=2)
        if not autocast:
            assert diff.max() <= 3, (prompt, diff.max())
            continue
        assert diff.mean() < 2 and (diff > 12).mean() < 0.05, (prompt, diff.mean())
        seen, drawn = segment(alone), segment(batched)
        assert sorted((f.colour, f.shape) for f in seen) == sorted((f.colour, f.shape)
                                                                    for f in drawn)
        for f in seen:
            assert min(abs(f.cx - g.cx) + abs(f.cy - g.cy) for g in drawn) < 0.08
