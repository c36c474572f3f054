"""How `easel up` sets its workers' threads: spinning OpenMP threads unless they would
oversubscribe the cores (then they sleep between parallel regions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.stack import Stack, StackOptions


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cores: int,
         **options: int) -> dict[str, str]:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("EASEL_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    return Stack(StackOptions(**options))._env("redis://127.0.0.1:1/0", tmp_path)  # type: ignore[arg-type]


def test_one_worker_uses_every_core_with_spinning_threads(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    env = _env(monkeypatch, tmp_path, 2, workers=1)
    assert env["EASEL_THREADS"] == "2"
    assert "OMP_WAIT_POLICY" not in env  # libgomp's default: spin briefly, then sleep


def test_more_threads_than_cores_sleep_between_regions(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    assert _env(monkeypatch, tmp_path, 2, workers=2)["EASEL_THREADS"] == "1"
    assert "OMP_WAIT_POLICY" not in _env(monkeypatch, tmp_path, 2, workers=2)
    env = _env(monkeypatch, tmp_path, 2, workers=2, threads=2)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_an_operators_policy_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    env = Stack(StackOptions(workers=2, threads=2))._env("redis://127.0.0.1:1/0", tmp_path)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
