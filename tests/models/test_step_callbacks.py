"""A pipeline's `guided_fraction`: guidance ends part-way, in every kind of rendering call, with
previews still right; families that cannot end it refuse it at load."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.catalog import PipelineSpec
from models import rendering
from models.checks import CheckpointError
from models.loading import LoadedPipeline, load_pipeline
from models.step_callbacks import guided_steps
from tests.models.test_families import NATIVE, _picture, pipeline_folder


def test_guided_steps_are_the_first_fraction_and_at_least_one() -> None:
    assert guided_steps(16, 0.6) == 10
    assert guided_steps(20, 1.0) == 20
    assert guided_steps(3, 0.1) == 1


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def loaded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> LoadedPipeline:
    folder = pipeline_folder(request.param, tmp_path_factory)
    spec = PipelineSpec(name=request.param, path=str(folder), native_size=NATIVE, steps=4,
                        guidance=3.5, guided_fraction=0.5)
    return load_pipeline(spec)


@pytest.fixture
def batches(loaded: LoadedPipeline) -> Iterator[list[int]]:
    """The batch size of every denoiser call while the test runs."""
    seen: list[int] = []
    hook = loaded.text2img.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(int(args[0].shape[0])), with_kwargs=True)
    yield seen
    hook.remove()


def _with_fraction(loaded: LoadedPipeline, fraction: float) -> LoadedPipeline:
    return dataclasses.replace(loaded, spec=dataclasses.replace(loaded.spec,
                                                                guided_fraction=fraction))


def test_generation_guides_its_first_steps_only(loaded: LoadedPipeline,
                                                batches: list[int]) -> None:
    got: list[Image.Image] = []
    (image,) = rendering.generate_prompts(loaded, ["a blue square"], "blurry", [3], 4, 3.5,
                                          NATIVE, NATIVE, partials=3,
                                          on_partial=lambda i, im: got.append(im))
    assert batches == [2, 2, 1, 1]  # unconditional + conditional, then conditional alone
    assert len(got) == 3  # previews go on after guidance ends; the last is the final latents
    last, final = (np.asarray(im.convert("RGB"), dtype=np.int16) for im in (got[-1], image))
    assert np.abs(last - final).max() <= 2 and np.abs(last - final).mean() < 0.5
    batches.clear()
    (full,) = rendering.generate_prompts(_with_fraction(loaded, 1.0), ["a blue square"],
                                         "blurry", [3], 4, 3.5, NATIVE, NATIVE)
    assert batches == [2, 2, 2, 2]
    assert not np.array_equal(np.asarray(full), np.asarray(image))  # the fraction had an effect


def test_inpainting_and_image_to_image_end_guidance_too(loaded: LoadedPipeline,
                                                        batches: list[int]) -> None:
    picture = _picture()
    mask = Image.new("RGBA", picture.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (32, 32, 56, 56))
    rendering.edit(loaded, "a green circle", None, [1, 2], 8, 3.5, NATIVE, NATIVE, [picture],
                   mask, 0.5, partials=1, on_partial=lambda i, im: None)
    assert batches == [4, 4, 2, 2]  # two images: 4 of the 8 steps run at strength 0.5
    batches.clear()
    rendering.vary(loaded, [1], 8, 3.5, NATIVE, NATIVE, picture, 0.75)
    assert batches == [2, 2, 2, 1, 1, 1]  # round(0.5 x 6) guided


def test_no_guidance_no_change(loaded: LoadedPipeline, batches: list[int]) -> None:
    rendering.generate_prompts(loaded, ["a blue square"], None, [3], 4, 1.0, NATIVE, NATIVE)
    assert batches == [1, 1, 1, 1]


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_families_that_cannot_end_guidance_refuse_it(
        family: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    spec: Any = PipelineSpec(name=family, path=str(pipeline_folder(family, tmp_path_factory)),
                             native_size=NATIVE, steps=2, guided_fraction=0.6)
    with pytest.raises(CheckpointError, match="guided_fraction"):
        load_pipeline(spec)
    assert load_pipeline(dataclasses.replace(spec, guided_fraction=1.0)).spec.name == family


def test_the_catalog_checks_the_fraction() -> None:
    from core.catalog import CatalogError, parse_catalog

    for bad in (0, 1.5):
        with pytest.raises(CatalogError, match="guided_fraction must be in"):
            parse_catalog({"pipelines": {"p": {"path": "embedded:shapes",
                                               "guided_fraction": bad}}})
