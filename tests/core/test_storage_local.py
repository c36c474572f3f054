"""Local storage: atomic writes, safe keys, expiry of old files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.storage import LocalStorage, StorageError


def test_put_get_and_safe_keys(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("images/j/0.png", b"abc", "image/png")
    assert storage.get("images/j/0.png") == b"abc"
    storage.put("images/j/0.png", b"retry", "image/png")  # a retried job overwrites
    assert storage.get("images/j/0.png") == b"retry"
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(StorageError):
            storage.put(bad, b"x", "image/png")
    with pytest.raises(StorageError):
        storage.get("images/missing/0.png")
    assert storage.url("images/j/0.png", "http://h:1/") == "http://h:1/files/images/j/0.png"


def test_purge_removes_only_expired_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("images/old/0.png", b"o", "image/png")
    storage.put("images/new/0.png", b"n", "image/png")
    old = time.time() - 7200
    os.utime(storage.path("images/old/0.png"), (old, old))
    assert storage.purge_older_than(3600) == 1
    assert storage.get("images/new/0.png") == b"n"
    with pytest.raises(StorageError):
        storage.get("images/old/0.png")


def test_purge_removes_the_directories_it_empties(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("images/old/0.png", b"o", "image/png")
    storage.put("inputs/old/image.png", b"i", "image/png")
    storage.put("images/new/0.png", b"n", "image/png")
    old = time.time() - 7200
    for key in ("images/old/0.png", "inputs/old/image.png"):
        os.utime(storage.path(key), (old, old))
    assert storage.purge_older_than(3600) == 2
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["images", "images/new", "images/new/0.png"]  # no empty job directories
    assert tmp_path.exists()
    storage.put("inputs/again/image.png", b"x", "image/png")  # directories come back as needed
    assert storage.get("inputs/again/image.png") == b"x"


def test_a_write_survives_a_purge_removing_its_new_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge may find a job's directory empty between `put`'s mkdir and its first file."""
    import tempfile

    storage = LocalStorage(tmp_path)
    real = tempfile.mkstemp
    calls: list[str] = []

    def purged_first(*args: object, dir: str, **kw: object) -> tuple[int, str]:
        calls.append(dir)
        if len(calls) == 1:
            storage.purge_older_than(3600)  # the directory is empty: it goes
        return real(*args, dir=dir, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", purged_first)
    storage.put("images/race/0.png", b"r", "image/png")
    assert storage.get("images/race/0.png") == b"r" and len(calls) == 2


def test_failed_puts_and_gets_are_reported_to_the_metrics_hook(tmp_path: Path) -> None:
    """easel_storage_errors_total{op} (gateway and workers) and its alert count these."""
    storage = LocalStorage(tmp_path)
    failed: list[str] = []
    storage.on_error = failed.append
    with pytest.raises(StorageError):
        storage.get("images/missing/0.png")
    (tmp_path / "images").write_bytes(b"a file where a directory must go")  # even root fails
    with pytest.raises(StorageError):
        storage.put("images/j/0.png", b"x", "image/png")
    with pytest.raises(StorageError):
        storage.put("../escape", b"x", "image/png")  # a refused key is no storage failure
    assert failed == ["get", "put"]
