"""core/catalog.py: the built-in catalog, TOML catalogs, and the rules a model follows."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.catalog import DEFAULT_CATALOG_TOML, CatalogError, load_catalog, parse_catalog
from core.rules import FAMILIES


def test_built_in_ids_and_their_families() -> None:
    catalog = load_catalog(None)
    families = {m.id: m.family.name for m in catalog.models.values()}
    assert families == {"easel-shapes": "easel", "dall-e-2": "dall-e-2", "dall-e-3": "dall-e-3",
                        "gpt-image-1": "gpt-image", "gpt-image-1.5": "gpt-image",
                        "gpt-image-1-mini": "gpt-image", "gpt-image-2": "gpt-image-2",
                        "chatgpt-image-latest": "gpt-image-2"}
    assert {m.pipeline for m in catalog.models.values()} == {"shapes"}  # all embedded


def test_rules_of_a_model_drop_what_its_pipeline_cannot_do() -> None:
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    del raw["pipelines"]["shapes"]["transparency"]  # a pipeline with no transparency method
    catalog = parse_catalog(raw)
    model = catalog.models["gpt-image-1"]
    assert "transparent" in model.family.backgrounds
    assert catalog.rules_of(model).backgrounds == ("opaque", "auto")
    with_it = load_catalog(None).with_extra_images("first")
    assert with_it.rules_of(with_it.models["gpt-image-1"]) == FAMILIES["gpt-image"]


def test_rules_say_how_many_images_the_pipeline_uses() -> None:
    """An edit's image limit is what the pipeline draws from, unless the operator accepts more
    and renders from the first (EASEL_EXTRA_IMAGES=first); never above the family's own."""
    catalog = load_catalog(None)
    gpt, dalle3 = catalog.models["gpt-image-1"], catalog.models["dall-e-3"]
    assert catalog.rules_of(gpt).max_images == 1  # image-to-image from one image
    assert catalog.with_extra_images("first").rules_of(gpt).max_images == 16
    assert catalog.rules_of(dalle3).max_images == 0  # no edits at all
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["pipelines"]["shapes"]["reference_images"] = 4
    references = parse_catalog(raw)
    assert references.rules_of(references.models["gpt-image-1"]).max_images == 4
    assert references.rules_of(references.models["dall-e-2"]).max_images == 1  # the family's
    raw["pipelines"]["shapes"]["reference_images"] = 17
    with pytest.raises(CatalogError, match=r"\[pipelines.shapes\]: reference_images must be 0"):
        parse_catalog(raw)


def test_default_model() -> None:
    catalog = load_catalog(None)
    assert catalog.default_model().id == "dall-e-2"  # OpenAI's default
    assert catalog.with_default("gpt-image-1").default_model().id == "gpt-image-1"
    with pytest.raises(ValueError, match="EASEL_DEFAULT_MODEL"):
        catalog.with_default("nope")
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["models"] = [m for m in raw["models"] if m["id"] != "dall-e-2"]
    assert parse_catalog(raw).default_model().id == "easel-shapes"  # the first one


def test_toml_catalog_paths_and_errors(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(
        '[pipelines.sd]\npath = "./sd15"\n\n[[models]]\nid = "house"\npipeline = "sd"\n'
        'family = "gpt-image-2"\n')
    catalog = load_catalog(tmp_path / "models.toml")
    assert catalog.pipelines["sd"].path == str((tmp_path / "sd15").resolve())
    assert catalog.models["house"].family is FAMILIES["gpt-image-2"]
    with pytest.raises(ValueError, match="unknown family"):
        parse_catalog({"pipelines": {"p": {"path": "x"}},
                       "models": [{"id": "m", "pipeline": "p", "family": "dall-e-4"}]})
    with pytest.raises(ValueError, match="unknown pipeline"):
        parse_catalog({"pipelines": {}, "models": [{"id": "m", "pipeline": "p"}]})
    with pytest.raises(ValueError, match="no models"):
        parse_catalog({"pipelines": {"p": {"path": "x"}}})


def _mistake(tmp_path: Path, text: str) -> str:
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "models.toml")
    message = str(info.value)
    assert all(line.startswith(str(tmp_path / "models.toml")) for line in message.splitlines())
    return message


GOOD_PIPELINE = '[pipelines.sd]\npath = "./sd15"\n'
MODEL = '[[models]]\nid = "house"\npipeline = "sd"\n'


def test_catalog_mistakes_name_the_file_the_entry_and_the_fix(tmp_path: Path) -> None:
    message = _mistake(tmp_path, GOOD_PIPELINE + MODEL + 'famliy = "dall-e-3"\n')
    assert "[[models]] #1 (id 'house'): unknown key 'famliy' (did you mean 'family'?)" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + 'native_sise = 256\n' + MODEL)
    assert "[pipelines.sd]: unknown key 'native_sise' (did you mean 'native_size'?)" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + 'native_size = "256"\n' + MODEL)
    assert "[pipelines.sd]: native_size must be an integer, not '256'" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + MODEL + 'family = "sdxl"\n')
    assert "unknown family 'sdxl'; valid: dall-e-2, dall-e-3, gpt-image" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + MODEL + MODEL)
    assert "[[models]] #2 (id 'house'): duplicate model id 'house'" in message
    (tmp_path / "sd15").mkdir()
    message = _mistake(tmp_path, GOOD_PIPELINE + '[pipelines.again]\npath = "sd15"\n' + MODEL)
    assert "[pipelines.again]: path" in message and "already pipeline 'sd'" in message
    message = _mistake(tmp_path, '[pipelines.sd]\nsteps = 4\n[[models]]\nid = "m"\n')
    assert "[pipelines.sd]: missing required key 'path'" in message
    assert "[[models]] #1 (id 'm'): missing required key 'pipeline'" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + 'transparency = "alpha"\n' + MODEL)
    assert "unknown transparency 'alpha'; valid: '', 'white-key'" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + 'best_of = 4\n' + MODEL)
    assert "[pipelines.sd]: best_of 4 needs a scorer" in message
    message = _mistake(tmp_path, GOOD_PIPELINE + 'scorer = "./clip"\nbest_of = 99\n' + MODEL)
    assert "[pipelines.sd]: best_of must be 1 to 16, not 99" in message
    assert "not valid TOML" in _mistake(tmp_path, "[pipelines.sd\n")


def test_a_relative_path_that_exists_beside_the_catalog_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / "sd15").mkdir(parents=True)
    (tmp_path / "models.toml").write_text('[pipelines.sd]\npath = "models/sd15"\n' + MODEL)
    catalog = load_catalog(tmp_path / "models.toml")
    assert catalog.pipelines["sd"].path == str((tmp_path / "models" / "sd15").resolve())
