"""service/validation.py: bodies against the request models and the families' rules, every
failure an OpenAI 400 naming its `param` (no gateway, no Redis)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from core.catalog import load_catalog, parse_catalog
from core.errors import OpenAIError
from core.rules import FAMILIES, MAX_BEST_OF, MAX_CANDIDATES, QUALITY_STEPS
from service.validation import LongInt, parse_json_edit, parse_request

CATALOG = load_catalog(None)


def _error(body: Any, kind: str = "generate", form: bool = False) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        parse_request(body, CATALOG, kind, form=form)  # type: ignore[arg-type]
    return info.value


def _ok(body: dict[str, Any], kind: str = "generate", form: bool = False) -> Any:
    return parse_request(body, CATALOG, kind, form=form)  # type: ignore[arg-type]


@pytest.mark.parametrize("body,param,code", [
    ({}, "prompt", "missing_required_parameter"),
    ({"prompt": "  "}, "prompt", "missing_required_parameter"),
    ({"prompt": 5}, "prompt", "invalid_type"),
    ({"prompt": "x", "n": "2"}, "n", "invalid_type"),  # JSON is strict: "2" is not 2
    ({"prompt": "x", "n": True}, "n", "invalid_type"),
    ({"prompt": "x", "n": 11}, "n", "invalid_value"),
    ({"prompt": "x", "n": LongInt(5000)}, "n", "invalid_value"),
    ({"prompt": "x", "user": "a\ud800"}, "user", "invalid_value"),
    ({"prompt": "x", "bogus": 1}, "bogus", "unknown_parameter"),
    ({"prompt": "x", "model": 3}, "model", "invalid_type"),
    ({"prompt": "x", "guidance_scale": float("inf")}, "guidance_scale", "invalid_value"),
    ({"prompt": "x", "steps": 101}, "steps", "invalid_value"),  # the pipeline's max_steps
    ({"prompt": "x", "model": "dall-e-3", "quality": "ultra"}, "quality", "invalid_value"),
    ({"prompt": "x", "model": "dall-e-2", "style": "vivid"}, "style", "unsupported_parameter"),
    ({"prompt": "x", "model": "dall-e-2", "stream": True}, "stream", "unsupported_parameter"),
    ({"prompt": "x", "model": "dall-e-2", "output_format": "webp"}, "output_format",
     "unsupported_parameter"),
    ({"prompt": "x", "model": "gpt-image-1", "output_compression": 50}, "output_compression",
     "invalid_value"),  # png
    ({"prompt": "x", "model": "gpt-image-1", "response_format": "url"}, "response_format",
     "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-1", "stream": True, "n": 2}, "n", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-1", "background": "transparent",
      "output_format": "jpeg"}, "background", "invalid_value"),
    ({"prompt": "x", "model": "gpt-image-2", "background": "transparent"}, "background",
     "invalid_value"),
    ({"prompt": "x" * 1001, "model": "dall-e-2"}, "prompt", "string_above_max_length"),
])
def test_bad_generations_name_the_param(body: dict[str, Any], param: str, code: str) -> None:
    error = _error(body)
    assert (error.status, error.param, error.code) == (400, param, code), error.message


def test_unknown_model_is_404_before_anything_else() -> None:
    error = _error({"model": "sdxl-nope", "n": "lots"})
    assert (error.status, error.code) == (404, "model_not_found")


@pytest.mark.parametrize("size,ok", [
    ("1920x1088", True), ("3840x2160", True), ("1024x3072", True), ("16x48", True),
    ("1920x1080", False), ("3856x2160", False), ("1024x3088", False), ("3840x3840", False),
    ("0x0", False), ("-16x16", False), ("1920X1088", False), (" 1024x1024", False)])
def test_gpt_image_2_sizes(size: str, ok: bool) -> None:
    body = {"prompt": "x", "model": "gpt-image-2", "size": size}
    if ok:
        assert _ok(body).size == size
    else:
        assert _error(body).param == "size"


def test_nulls_and_empty_strings_mean_defaults() -> None:
    for empty in (None, ""):
        params = _ok({"prompt": "x", "model": empty, "size": empty, "n": empty,
                      "quality": empty})
        assert (params.model.id, params.size, params.n, params.quality) == (
            "dall-e-2", "1024x1024", 1, "standard")


def test_multipart_text_is_converted() -> None:
    params = _ok({"prompt": "x", "model": "easel-shapes", "n": "2", "steps": "4",
                  "guidance_scale": "2.5", "strength": "0.5"}, "edit", form=True)
    assert (params.n, params.steps, params.guidance, params.strength) == (2, 4, 2.5, 0.5)
    assert _error({"prompt": "x", "n": "many"}, "edit", form=True).param == "n"
    streamed = _ok({"prompt": "x", "model": "gpt-image-1", "stream": "true"}, "edit", form=True)
    assert streamed.stream


def test_defaults_come_from_the_family() -> None:
    gpt = _ok({"prompt": "x", "model": "gpt-image-1"})
    assert (gpt.size, gpt.quality, gpt.response_format, gpt.input_fidelity) == (
        "1024x1024", "auto", "b64_json", "low")  # size auto renders at 1024x1024
    assert _ok({"prompt": "x", "model": "gpt-image-2"}, "edit").input_fidelity == "high"
    assert _ok({"n": 2}, "variation").strength == 0.6  # the pipeline's variation strength


def test_quality_sets_the_steps() -> None:
    """Without a scorer to rank candidates (edits here) quality is denoising work."""
    base = CATALOG.pipelines["shapes"].steps
    steps = {q: _ok({"prompt": "x", "model": "easel-shapes", "quality": q}, "edit").steps
             for q in FAMILIES["easel"].qualities}
    assert steps == {q: round(base * QUALITY_STEPS[q]) for q in steps}


def test_with_a_scorer_quality_sets_the_candidates() -> None:
    pipe = CATALOG.pipelines["shapes"]
    assert pipe.scorer and pipe.best_of > 1
    got = {q: _ok({"prompt": "x", "model": "easel-shapes", "quality": q})
           for q in FAMILIES["easel"].qualities}
    assert {q: p.best_of for q, p in got.items()} == {
        "standard": pipe.best_of, "auto": pipe.best_of, "medium": pipe.best_of, "low": 1,
        "high": 2 * pipe.best_of, "hd": 2 * pipe.best_of}
    assert {p.steps for p in got.values()} == {pipe.steps}  # candidates, not steps
    assert _ok({"prompt": "x", "model": "dall-e-2"}).best_of == pipe.best_of  # the default
    assert _ok({"prompt": "x", "model": "easel-shapes", "best_of": 3,
                "quality": "low"}).best_of == 3  # asked wins
    # n x best_of stays within MAX_CANDIDATES when quality implies it
    assert _ok({"prompt": "x", "model": "easel-shapes", "n": 10,
                "quality": "hd"}).best_of == MAX_CANDIDATES // 10
    assert _ok({"n": 2}, "variation").best_of == 1
    assert _ok({"prompt": "x", "best_of": 2, "seed": 1}).to_job("j").best_of == 2


@pytest.mark.parametrize("body,kind,code", [
    ({"prompt": "x", "best_of": 0}, "generate", "invalid_value"),
    ({"prompt": "x", "best_of": MAX_BEST_OF + 1}, "generate", "invalid_value"),
    ({"prompt": "x", "best_of": "4"}, "generate", "invalid_type"),
    ({"prompt": "x", "best_of": 4, "n": 10}, "generate", "invalid_value"),  # 40 candidates
    ({"prompt": "x", "best_of": 2}, "edit", "unknown_parameter"),  # generations only
])
def test_bad_best_of_is_a_400_naming_it(body: dict[str, Any], kind: str, code: str) -> None:
    error = _error(body, kind)
    assert (error.status, error.param, error.code) == (400, "best_of", code), error.message


def test_best_of_is_refused_where_the_pipeline_has_no_scorer() -> None:
    catalog = parse_catalog(tomllib.loads(
        '[pipelines.sd]\npath = "embedded:shapes"\n[[models]]\nid = "m"\npipeline = "sd"\n'))
    assert parse_request({"prompt": "x", "quality": "hd"}, catalog).best_of == 1
    with pytest.raises(OpenAIError) as info:
        parse_request({"prompt": "x", "best_of": 2}, catalog)
    assert (info.value.param, info.value.code) == ("best_of", "unsupported_parameter")


def test_operations_follow_the_family() -> None:
    assert _error({"prompt": "x", "model": "dall-e-3"}, "edit").param == "model"
    assert _error({"model": "gpt-image-1"}, "variation").code == "unsupported_model"
    error = _error({"prompt": "x", "model": "gpt-image-2", "input_fidelity": "low"}, "edit")
    assert error.param == "input_fidelity" and "'high'" in error.message


def test_json_edits_take_image_references() -> None:
    params, images, mask = parse_json_edit(
        {"prompt": "x", "model": "gpt-image-1", "images": [{"image_url": "data:,a"}],
         "mask": {"image_url": "data:,b"}}, CATALOG)
    assert params.kind == "edit" and images[0].image_url == "data:,a" and mask is not None
    for body, param in (({"prompt": "x", "images": [{"url": "x"}]}, "images[0].url"),
                        ({"prompt": "x", "images": []}, "images"),
                        ({"prompt": "x"}, "images")):
        with pytest.raises(OpenAIError) as info:
            parse_json_edit(body, CATALOG)
        assert info.value.param == param


def test_the_same_seed_gives_the_same_seeds() -> None:
    a = _ok({"prompt": "x", "n": 3, "seed": 7})
    assert a.seeds == [7, 8, 9] == _ok({"prompt": "x", "n": 3, "seed": 7}).seeds
