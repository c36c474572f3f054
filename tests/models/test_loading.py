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
