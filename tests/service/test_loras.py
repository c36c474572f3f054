"""service/loras.py with core/requests.py: Easel's `loras` extension, every mistake a 400 that
names the field (no gateway, no Redis)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from core.catalog import DEFAULT_CATALOG_TOML, load_catalog, parse_catalog
from core.errors import OpenAIError
from service.validation import parse_json_edit, parse_request

CATALOG = load_catalog(None)


def _error(body: Any, kind: str = "generate", form: bool = False,
           catalog: Any = CATALOG) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        parse_request(body, catalog, kind, form=form)  # type: ignore[arg-type]
    return info.value


def test_adapters_resolve_with_their_default_scale_sorted_by_name() -> None:
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["adapters"]["dots"] = {"path": "embedded:shapes-outline", "pipelines": ["shapes"],
                               "scale": 0.7}
    catalog = parse_catalog(raw)
    params = parse_request({"prompt": "x", "loras": [{"name": "outline", "scale": 1.5},
                                                      {"name": "dots"}]}, catalog)
    assert params.loras == (("dots", 0.7), ("outline", 1.5))
    job = params.to_job("j")
    assert [(a.name, a.scale) for a in job.loras] == [("dots", 0.7), ("outline", 1.5)]
    assert parse_request({"prompt": "x"}, CATALOG).loras == ()
    assert parse_request({"prompt": "x", "loras": []}, CATALOG).loras == ()
    assert parse_request({"prompt": "x", "loras": None}, CATALOG).loras == ()


def test_edits_take_loras_in_json_and_as_multipart_json_text() -> None:
    params, _, _ = parse_json_edit({"prompt": "x", "images": [{"image_url": "data:,"}],
                                    "loras": [{"name": "outline"}]}, CATALOG)
    assert params.loras == (("outline", 1.0),)
    form = parse_request({"prompt": "x", "loras": '[{"name": "outline", "scale": "0.5"}]'},
                         CATALOG, "edit", form=True)
    assert form.loras == (("outline", 0.5),)
    assert _error({"prompt": "x", "loras": "[{"}, "edit", form=True).param == "loras"


@pytest.mark.parametrize("loras,param,code", [
    ([{"name": "nope"}], "loras[0].name", "invalid_value"),
    ([{"name": "outline"}, {"name": "outline"}], "loras[1].name", "invalid_value"),
    ([{"name": "outline", "scale": 2.5}], "loras[0].scale", "invalid_value"),
    ([{"name": "outline", "scale": -2.5}], "loras[0].scale", "invalid_value"),
    ([{"name": "outline", "scale": "1"}], "loras[0].scale", "invalid_type"),
    ([{"name": "outline", "weight": 1}], "loras[0].weight", "unknown_parameter"),
    ([{"scale": 1}], "loras[0].name", "missing_required_parameter"),
    ([{"name": 3}], "loras[0].name", "invalid_type"),
    ("outline", "loras", "invalid_type"),
    ({"name": "outline"}, "loras", "invalid_type"),
    ([{"name": "outline"}] * 5, "loras", "invalid_value"),  # at most 4
])
def test_bad_loras_are_400s_naming_them(loras: Any, param: str, code: str) -> None:
    error = _error({"prompt": "x", "loras": loras})
    assert (error.status, error.param, error.code) == (400, param, code)


def test_an_adapter_of_another_pipeline_is_refused_for_this_model() -> None:
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["pipelines"]["other"] = {"path": "embedded:shapes", "native_size": 64}
    raw["models"].append({"id": "other-model", "pipeline": "other"})
    error = _error({"prompt": "x", "model": "other-model", "loras": [{"name": "outline"}]},
                   catalog=parse_catalog(raw))
    assert error.param == "loras[0].name" and "does not fit model 'other-model'" in error.message


def test_variations_take_loras_too() -> None:
    params = parse_request({"loras": '[{"name": "outline"}]'}, CATALOG, "variation", form=True)
    assert params.loras == (("outline", 1.0),)
