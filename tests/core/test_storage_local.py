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
