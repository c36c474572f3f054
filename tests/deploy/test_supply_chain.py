"""Every dependency is pinned: constraints.txt holds exact versions that `make`, CI and the
Dockerfile all install from, and pyproject.toml's ranges keep fixed releases and RQ's major."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        found[canonicalize_name(match[1])] = match[2]
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_dependency_has_an_exact_pin_inside_its_range() -> None:
    pinned = pins()
    assert "torch" not in pinned, "torch is pinned by the Makefile (TORCH) and the Dockerfile"
    for req in requirements():
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pinned, f"{req.name} is not pinned in constraints.txt (make lock)"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pinned[name]}, outside {req}"
    assert "pip" in pinned and "rq" in pinned


def test_this_environment_matches_the_pins() -> None:
    """A stale lock: someone upgraded a package without `make lock` (or the reverse)."""
    stale = []
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if Version(installed) != Version(pinned):
            stale.append(f"{name}: installed {installed}, pinned {pinned}")
    assert not stale, "run `make lock` or reinstall (`make setup`): " + "; ".join(stale)


@pytest.mark.parametrize(("name", "unsafe", "floor"), [
    ("starlette", "1.3.0", "1.3.1"), ("python-multipart", "0.0.30", "0.0.31"),
    ("pillow", "12.1.0", "12.1.1")])
def test_ranges_exclude_vulnerable_releases(name: str, unsafe: str, floor: str) -> None:
    req = next(r for r in requirements() if canonicalize_name(r.name) == name)
    assert not req.specifier.contains(unsafe) and req.specifier.contains(floor)


def test_rq_is_held_to_the_major_its_hooks_were_checked_against() -> None:
    """workers/worker.py subclasses RQ internals (tests/workers/test_rq_contract.py)."""
    from tests.workers.test_rq_contract import TESTED_MAJOR

    rq = next(r for r in requirements() if r.name == "rq")
    assert rq.specifier.contains(f"{TESTED_MAJOR}.0.0")
    assert not rq.specifier.contains(f"{TESTED_MAJOR + 1}.0.0")
    assert not rq.specifier.contains(f"{TESTED_MAJOR - 1}.99.0")


def test_make_ci_and_the_images_install_from_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines()
                if "pip install" in line and not line.startswith("#")]
    for line in installs:
        if "$(TORCH)" in line or "pip-audit" in line:
            continue  # torch: pinned by TORCH; pip-audit: its own venv, outside Easel's
        assert "-c $(CONSTRAINTS)" in line, line
    assert "CONSTRAINTS := constraints.txt" in makefile
    assert re.search(r"^\$\(STAMP\):.*\$\(CONSTRAINTS\)", makefile, re.M), \
        "a changed lock must reinstall"
    assert "make test" in (ROOT / ".ci/run").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for match in re.finditer(r"pip install(?:[^\n]*\\\n)*[^\n]*", dockerfile):
        command = match[0]
        if "--no-deps" in command:
            continue  # installs only what it names: torch (pinned) or Easel's own wheel
        assert "--constraint /deps/constraints.txt" in command, command
    assert "constraints.txt" in dockerfile.split("FROM base AS builder", 1)[1].split("FROM", 1)[0]
