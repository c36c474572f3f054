"""core/adapters.py: the catalog's [adapters.NAME] tables, checked with the rest of it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.catalog import DEFAULT_CATALOG_TOML, CatalogError, load_catalog, parse_catalog


def test_the_built_in_catalog_ships_the_outline_adapter_for_shapes() -> None:
    catalog = load_catalog(None)
    assert [a.name for a in catalog.adapters_of("shapes")] == ["outline"]
    assert catalog.adapters["outline"].path == "embedded:shapes-outline"
    assert catalog.adapters["outline"].scale == 1.0
    assert catalog.adapters_of("other") == []


def _with(adapters: dict[str, object], base: Path | None = None) -> object:
    raw = tomllib.loads(DEFAULT_CATALOG_TOML)
    raw["adapters"] = adapters
    return parse_catalog(raw, base, "/srv/models.toml")


def test_a_file_beside_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "ink.safetensors").write_bytes(b"x")
    catalog = _with({"ink": {"path": "./ink.safetensors", "pipelines": ["shapes"],
                             "scale": 0.5, "description": "ink"}}, tmp_path)
    spec = catalog.adapters["ink"]  # type: ignore[attr-defined]
    assert spec.path == str(tmp_path / "ink.safetensors") and spec.scale == 0.5


@pytest.mark.parametrize("table,message", [
    ({"path": "embedded:shapes-outline", "pipelines": ["shapes"], "scael": 1.0},
     r"\[adapters.ink\]: unknown key 'scael' \(did you mean 'scale'\?\)"),
    ({"pipelines": ["shapes"]}, r"\[adapters.ink\]: missing required key 'path'"),
    ({"path": "embedded:shapes-outline", "pipelines": ["sd15"]},
     r"\[adapters.ink\]: pipelines must name pipelines of this catalog; unknown: \['sd15'\]"),
    ({"path": "embedded:shapes-outline", "pipelines": ["shapes"], "scale": 3},
     r"\[adapters.ink\]: scale must be within ±2"),
    ({"path": "/nowhere/ink.safetensors", "pipelines": ["shapes"]},
     r"\[adapters.ink\]: path /nowhere/ink.safetensors is not a file"),
    ({"path": "/srv/ink.ckpt", "pipelines": ["shapes"]},
     r"\[adapters.ink\]: path must be a LoRA .safetensors file"),
    ({"path": "embedded:shapes-outline", "pipelines": "shapes"},
     r"\[adapters.ink\]: pipelines must be a list"),
])
def test_mistakes_name_the_file_and_the_entry(table: dict[str, object], message: str) -> None:
    with pytest.raises(CatalogError, match=r"/srv/models.toml: " + message):
        _with({"ink": table})
