"""`easel up` refuses catalog mistakes before starting anything, and a failed start leaves no
private Redis behind; the ready line's example names a model the catalog has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.stack import Stack, StackOptions, example_curl
from core.catalog import CatalogError, load_catalog, parse_catalog


def test_a_catalog_mistake_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models.toml").write_text(
        '[pipelines.p]\npath = "embedded:shapes"\nnative_sise = 64\n'
        '[[models]]\nid = "m"\npipeline = "p"\n')
    monkeypatch.setenv("EASEL_MODELS_FILE", str(tmp_path / "models.toml"))
    monkeypatch.delenv("EASEL_REDIS_URL", raising=False)
    stack = Stack(StackOptions(data_dir=str(tmp_path / "data")))
    with pytest.raises(CatalogError, match="native_sise"):
        stack.run()
    assert stack.redis is None and not stack.procs
    monkeypatch.delenv("EASEL_MODELS_FILE")
    monkeypatch.setenv("EASEL_DEFAULT_MODEL", "dall-e-4")
    with pytest.raises(CatalogError, match="EASEL_DEFAULT_MODEL='dall-e-4' is not in"):
        stack.run()
    assert stack.redis is None
    monkeypatch.setenv("EASEL_MODELS_FILE", str(tmp_path / "models.toml"))
    monkeypatch.delenv("EASEL_DEFAULT_MODEL")
    # From the command line: the message, exit status 2, no traceback.
    done = subprocess.run([sys.executable, "-m", "cli", "up", "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"easel: {tmp_path / 'models.toml'}: [pipelines.p]: unknown key 'native_sise'" \
        in done.stderr


def test_a_failed_start_stops_its_private_redis(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EASEL_REDIS_URL", "EASEL_MODELS_FILE", "EASEL_API_KEYS", "EASEL_AUTH",
                 "EASEL_ALLOW_NO_AUTH_PUBLIC"):
        monkeypatch.delenv(name, raising=False)
    stack = Stack(StackOptions(host="0.0.0.0", data_dir=str(tmp_path / "data")))
    with pytest.raises(SystemExit, match="refusing to serve"):  # after Redis started
        stack.run()
    assert stack.redis is not None and stack.redis.poll() is not None  # stopped, not orphaned


def test_the_ready_line_example_uses_a_model_of_the_catalog() -> None:
    catalog = parse_catalog({"pipelines": {"p": {"path": "embedded:shapes"}},
                             "models": [{"id": "house", "pipeline": "p", "family": "dall-e-3"},
                                        {"id": "img", "pipeline": "p",
                                         "family": "gpt-image"}]})
    line = example_curl("http://h", catalog)
    assert '"model":"house"' in line and '"size":"1024x1024"' in line
    line = example_curl("http://h", catalog.with_default("img"))
    assert '"model":"img"' in line and '"response_format":"b64_json"' in line
    assert '"model":"dall-e-2"' in example_curl("http://h", load_catalog(None))


def test_the_start_up_output_names_pipelines_that_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EASEL_LOG_JSON", raising=False)
    monkeypatch.setattr("cli.stack.signing_env", lambda env, data: None)
    stack = Stack(StackOptions(data_dir=str(tmp_path)))
    monkeypatch.setattr(stack, "_spawn", lambda name, env: None)
    monkeypatch.setattr(stack, "_supervise", lambda env: None)
    monkeypatch.setattr(stack, "_wait_ready", lambda: {
        "status": "degraded", "failed": {"second": "pipeline second failed to load: no vae/"},
        "failed_adapters": {"shapes": {"bad": "adapter bad for pipeline shapes failed to load: "
                                              "header too small"}}})
    stack._start(load_catalog(None), "redis://x", tmp_path)
    out = capsys.readouterr().out
    assert "easel: pipeline second failed to load: no vae/" in out and "ready in" in out
    assert "easel: adapter bad for pipeline shapes failed to load: header too small" in out
    monkeypatch.setattr(stack, "_wait_ready", lambda: {"status": "failed", "failed": {}})
    stack._start(load_catalog(None), "redis://x", tmp_path)
    out = capsys.readouterr().out
    assert "no pipeline loaded" in out and "ready in" not in out
