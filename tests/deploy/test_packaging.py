"""What a wheel (and so every container image) carries: the embedded model, its adapter and
scorer, and the playground's files, through pyproject's package-data globs. A file the globs
miss works from a checkout and is missing in an image (found by the container smoke: the
shipped LoRA adapter failed to load there)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from models.loading import EMBEDDED

ROOT = Path(__file__).resolve().parents[2]


def _packaged(path: Path) -> bool:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]
    rel = path.relative_to(ROOT)
    for package, patterns in globs.items():
        base = Path(*package.split("."))
        if base in rel.parents:
            inner = rel.relative_to(base).as_posix()
            if any(fnmatch.fnmatch(inner, p) and inner.count("/") == p.count("/")
                   for p in patterns):
                return True
    return False


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def test_every_embedded_file_is_in_the_wheel() -> None:
    missing = [str(f.relative_to(ROOT)) for path in EMBEDDED.values() if path.exists()
               for f in _files(path) if not _packaged(f)]
    assert missing == []


def test_the_playground_is_in_the_wheel() -> None:
    static = ROOT / "service" / "static"
    missing = [str(f.relative_to(ROOT)) for f in _files(static) if not _packaged(f)]
    assert missing == []
