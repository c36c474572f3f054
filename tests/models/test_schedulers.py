"""`scheduler` per request: validated against the pipeline's list, swapped on the resident
weights (from_config) and put back, and never mixed in one batch."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.catalog import DEFAULT_CATALOG_TOML, load_catalog, parse_catalog
from core.errors import OpenAIError
from core.jobs import RenderJob
from core.rules import SCHEDULERS
from models import rendering
from models.families import FLUX
from models.loading import LoadedPipeline, load_pipeline
from service.validation import parse_request
from workers.batching import batch_key


@pytest.fixture(scope="module")
def shapes() -> LoadedPipeline:
    return load_pipeline(load_catalog(None).pipelines["shapes"])


def _pixels(images: list[Any]) -> np.ndarray:
    return np.asarray(images[0], dtype=np.int16)


def test_a_scheduler_swaps_without_touching_the_weights(shapes: LoadedPipeline) -> None:
    args = ("a red circle", None, [4], 4, 5.0, 64, 64)
    unet, own = shapes.text2img.unet, shapes.text2img.scheduler
    plain = _pixels(rendering.generate(shapes, *args))
    for name in SCHEDULERS:  # every listed one fits SD (the embedded model's family)
        with shapes.use_scheduler(name):
            assert shapes.text2img.scheduler is shapes.scheduler(name)
            other = _pixels(rendering.generate(shapes, *args))
        assert other.shape == plain.shape
    with shapes.use_scheduler("euler-a"):
        ancestral = _pixels(rendering.generate(shapes, *args))
        varied = rendering.vary(shapes, [1], 4, 1.0, 64, 64, rendering.generate(shapes, *args)[0],
                                0.6)  # the derived image-to-image pipeline samples with it too
        assert type(shapes.img2img.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert varied and not np.array_equal(ancestral, plain)
    assert shapes.text2img.unet is unet and shapes.text2img.scheduler is own  # put back
    assert shapes.img2img.scheduler is own
    assert np.array_equal(_pixels(rendering.generate(shapes, *args)), plain)


def test_a_scheduler_that_does_not_fit_is_named() -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    spec = load_catalog(None).pipelines["shapes"]
    flux = LoadedPipeline(spec, SimpleNamespace(scheduler=FlowMatchEulerDiscreteScheduler()), 0,
                          FLUX)
    with pytest.raises(ValueError, match=r"scheduler 'euler' does not fit pipeline shapes .*\[\]"):
        flux.scheduler("euler")


def test_requests_choose_from_the_pipelines_list() -> None:
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["pipelines"]["shapes"]["schedulers"] = ["euler", "ddim"]
    catalog = parse_catalog(raw)
    params = parse_request({"prompt": "x", "scheduler": "ddim"}, catalog)
    assert params.scheduler == "ddim" and params.to_job("j").scheduler == "ddim"
    assert parse_request({"prompt": "x"}, catalog).scheduler is None
    with pytest.raises(OpenAIError) as info:
        parse_request({"prompt": "x", "scheduler": "unipc"}, catalog)
    assert info.value.param == "scheduler" and "takes euler, ddim" in info.value.message
    with pytest.raises(OpenAIError) as info:
        parse_request({"prompt": "x", "scheduler": "k_euler"}, catalog)  # not in the vocabulary
    assert info.value.param == "scheduler"
    raw["pipelines"]["shapes"]["schedulers"] = []
    with pytest.raises(OpenAIError, match="no scheduler choice"):
        parse_request({"prompt": "x", "scheduler": "euler"}, parse_catalog(raw))
    raw["pipelines"]["shapes"]["schedulers"] = ["k_euler"]
    with pytest.raises(ValueError, match="unknown schedulers"):
        parse_catalog(raw)


def test_one_batch_never_mixes_schedulers() -> None:
    job = RenderJob(job_id="a", model="m", pipeline="p", width=64, height=64, n=1, seeds=[1],
                    steps=4, guidance=5.0)
    assert batch_key(job) == batch_key(job.model_copy(update={"job_id": "b"}))
    assert batch_key(job) != batch_key(job.model_copy(update={"scheduler": "euler"}))
    assert batch_key(job.model_copy(update={"scheduler": "ddim"})) != \
        batch_key(job.model_copy(update={"scheduler": "euler"}))
