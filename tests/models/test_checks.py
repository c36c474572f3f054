"""Checkpoints checked before loading: each mistake named as such, never as a JSON or Hub error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.catalog import PipelineSpec
from models.checks import CheckpointError, check_source
from models.loading import EMBEDDED, load_pipeline

SHAPES = EMBEDDED["shapes"]


def _folder(tmp_path: Path, drop: str = "", class_name: str = "") -> Path:
    """A pipeline folder of the embedded model's components (linked, not copied)."""
    folder = tmp_path / "pipe"
    folder.mkdir(parents=True)
    index = json.loads((SHAPES / "model_index.json").read_text())
    if class_name:
        index["_class_name"] = class_name
    (folder / "model_index.json").write_text(json.dumps(index))
    for part in SHAPES.iterdir():
        if part.is_dir() and part.name != drop:
            (folder / part.name).symlink_to(part)
    return folder


def _error(path: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_pipeline(PipelineSpec(name="p", path=path))
    return str(info.value)


def test_a_missing_component_is_named(tmp_path: Path) -> None:
    message = _error(str(_folder(tmp_path, drop="vae")))
    assert message.startswith("component 'vae' (AutoencoderKL) is missing: no folder vae/")


def test_inpainting_only_and_unsupported_classes(tmp_path: Path) -> None:
    inpaint = _folder(tmp_path / "a", class_name="StableDiffusionInpaintPipeline")
    assert "inpainting-only checkpoint" in _error(str(inpaint))
    other = _folder(tmp_path / "b", class_name="KandinskyPipeline")
    message = _error(str(other))
    assert "KandinskyPipeline is not supported; supported: StableDiffusionPipeline" in message


def test_wrong_folders_and_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert "one component of a pipeline" in _error(str(folder / "vae"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    message = _error(str(empty))
    assert "no model_index.json" in message and "model.safetensors" in message
    (tmp_path / "notes.txt").write_text("x")
    assert "not a checkpoint" in _error(str(tmp_path / "notes.txt"))
    check_source(str(folder), str(folder))  # the complete one passes


def test_an_unknown_hub_id_is_not_told_to_go_online(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    message = _error("models/sd15")
    assert "neither a folder or file" in message and "relative to the catalog file" in message
    assert "internet" not in message.lower() and "HF_HUB_OFFLINE" not in message
