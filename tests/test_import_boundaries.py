"""Imports flow service -> core <- workers -> models; torch never reaches the gateway."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"service", "workers", "models", "cli", "torch", "diffusers", "transformers",
             "fastapi", "starlette"},
    "service": {"workers", "models", "cli", "torch", "diffusers", "transformers"},
    "workers": {"service", "cli", "fastapi", "starlette", "uvicorn"},
    "models": {"service", "workers", "cli", "fastapi", "starlette"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_imports_respect_the_layers(package: str) -> None:
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN[package])
           for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


def test_gateway_does_not_load_torch() -> None:
    loaded = _loaded_after("from service.app import create_app")
    assert not loaded & {"torch", "diffusers", "transformers", "workers", "models"}
    assert "fastapi" in loaded  # the check can fail: it sees what was imported


def test_worker_does_not_load_fastapi() -> None:
    loaded = _loaded_after("import workers.main, workers.tasks")
    assert not loaded & {"fastapi", "starlette", "service", "uvicorn"}
    assert "rq" in loaded
