"""Reference-image families (FLUX.2): every image an edit sends conditions the render.

A tiny random-weight FLUX.2 [klein] (tests/models/flux2_tiny.py) is saved as a pipeline folder
and loaded through Easel's `load_pipeline`, like the other families in test_families.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.catalog import PipelineSpec
from models import rendering
from models.checks import CheckpointError
from models.loading import LoadedPipeline, load_pipeline
from tests.models import flux2_tiny

NATIVE = 128


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return flux2_tiny.save(tmp_path_factory.mktemp("flux2"))


@pytest.fixture(scope="module")
def loaded(folder: Path) -> LoadedPipeline:
    return load_pipeline(PipelineSpec(name="flux2", path=str(folder), native_size=NATIVE,
                                      steps=2, guidance=1.0, reference_images=3, schedulers=()))


def _a(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _flat(rgb: tuple[int, int, int], size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


class _Spy:
    """The pipeline, recording each call's arguments."""

    def __init__(self, pipe: Any) -> None:
        self.pipe, self.calls = pipe, list[dict[str, Any]]()

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.pipe(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


def _spy(loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    spy = _Spy(loaded.text2img)
    monkeypatch.setattr(loaded, "text2img", spy)
    return spy.calls


def test_loads_as_a_reference_family(loaded: LoadedPipeline) -> None:
    assert loaded.family.name == "flux2" and loaded.family.references
    assert loaded.size_multiple == 16  # the VAE's 8x times the 2x2 latent patch


def test_previews_decode_like_the_final_image(loaded: LoadedPipeline) -> None:
    got: list[Image.Image] = []
    (final,) = rendering.generate_prompts(loaded, ["a red circle"], None, [5], 2, 1.0, 128, 64,
                                          partials=2, on_partial=lambda i, im: got.append(im))
    assert len(got) == 2 and final.size == (128, 64)
    assert np.abs(_a(got[-1]) - _a(final)).max() <= 1  # unpacking and batch-norm undone right


def test_every_image_conditions_the_edit(loaded: LoadedPipeline,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    red, blue = _flat((200, 20, 20)), _flat((20, 20, 200))
    calls = _spy(loaded, monkeypatch)
    args = ("a cat", None, [1, 2], 2, 1.0, NATIVE, NATIVE)
    both = rendering.edit(loaded, *args, [red, blue], None, None)
    assert len(calls[0]["image"]) == 2  # one call, both references
    again = rendering.edit(loaded, *args, [red, blue], None, None)
    other = rendering.edit(loaded, *args, [red, red], None, None)
    assert all(np.array_equal(_a(x), _a(y)) for x, y in zip(both, again, strict=True))
    # Only the second image differs, and the pictures do: it was used.
    assert not np.array_equal(_a(both[0]), _a(other[0]))
    assert [im.size for im in both] == [(NATIVE, NATIVE)] * 2


def test_input_fidelity_sets_how_much_of_each_reference_is_kept(
        loaded: LoadedPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(loaded, monkeypatch)
    sources = [_flat((200, 20, 20), 512), _flat((20, 20, 200), 256)]
    args = ("a cat", None, [1], 2, 1.0, NATIVE, NATIVE, sources, None, None)
    (high,) = rendering.edit(loaded, *args, fidelity="high")
    (low,) = rendering.edit(loaded, *args, fidelity="low")
    high_sizes = [im.size for im in calls[0]["image"]]
    low_sizes = [im.size for im in calls[1]["image"]]
    assert high_sizes == [(NATIVE, NATIVE)] * 2  # the render's area
    assert low_sizes == [(64, 64)] * 2  # half the side, a quarter of the image tokens
    assert not np.array_equal(_a(high), _a(low))


def test_a_mask_keeps_the_first_image_outside_it(loaded: LoadedPipeline) -> None:
    source = _flat((10, 200, 10), NATIVE)
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 32, 96, 96))
    (edited,) = rendering.edit(loaded, "a cat", None, [1], 2, 1.0, NATIVE, NATIVE,
                               [source, _flat((20, 20, 200))], mask, None)
    diff = np.abs(_a(edited) - _a(source))
    assert diff[:24, :].max() == 0 and diff[:, :24].max() == 0  # outside: the source
    assert diff[40:88, 40:88].mean() > 10  # inside: drawn anew


def test_extreme_references_are_padded_to_what_the_pipeline_takes(
        loaded: LoadedPipeline) -> None:
    banner = Image.new("RGB", (1000, 40), (0, 200, 0))
    (drawn,) = rendering.edit(loaded, "a cat", None, [1], 2, 1.0, NATIVE, NATIVE,
                              [banner, _flat((1, 2, 3), 16)], None, None, fidelity="low")
    assert drawn.size == (NATIVE, NATIVE)


def test_variations_draw_from_the_image_as_a_reference(loaded: LoadedPipeline) -> None:
    a, b = rendering.vary(loaded, [1, 2], 2, 1.0, 96, 96, _flat((200, 20, 20)), None)
    assert a.size == (96, 96) and not np.array_equal(_a(a), _a(b))


def test_the_catalog_must_say_how_a_pipeline_edits(folder: Path) -> None:
    with pytest.raises(CheckpointError, match="set reference_images"):
        load_pipeline(PipelineSpec(name="f", path=str(folder), schedulers=()))
    with pytest.raises(CheckpointError, match="remove reference_images"):
        load_pipeline(PipelineSpec(name="shapes", path="embedded:shapes", reference_images=2))
