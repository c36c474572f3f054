"""Recovering a pipeline that failed to load at worker start, without restarting anything: the
operator fixes the checkpoint on disk and loads it through the admin API (service/admin.py ->
workers/control.py -> workers/residency.py). Once loaded, /readyz no longer lists the failure,
/v1/models counts a worker for its model, and a generation with that model returns an image.
Both for a worker that serves another pipeline meanwhile and for one whose only pipeline failed
(it stays up, reachable by the admin API)."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from models.loading import EMBEDDED
from service.auth import hash_key
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_until

OPS = {"authorization": "Bearer sk-ops"}
ALICE = {"authorization": "Bearer sk-alice"}
GOOD = ('[pipelines.shapes]\npath = "embedded:shapes"\nnative_size = 64\nsteps = 2\n'
        '[[models]]\nid = "good"\npipeline = "shapes"\n')
MENDED = ('[pipelines.mended]\npath = "{path}"\nnative_size = 64\nsteps = 2\n'
          '[[models]]\nid = "mended"\npipeline = "mended"\n')



def _readiness(gw: Gateway) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{gw.base_url}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return {"code": r.status_code, **r.json()}


def _stack(tmp: Path, catalog: str) -> Iterator[tuple[Gateway, Path]]:
    """A gateway and one worker on a catalog whose pipeline `mended` has no unet/ folder; yields
    the gateway and the folder the unet was moved to (moving it back is the fix)."""
    broken = tmp / "mended-weights"
    shutil.copytree(EMBEDDED["shapes"], broken)
    aside = tmp / "unet-aside"
    (broken / "unet").rename(aside)
    models = tmp / "models.toml"
    models.write_text(catalog + MENDED.format(path=broken))
    redis = RedisServer(tmp / "redis").start()
    env = base_env(redis.url, tmp, EASEL_AUTH="required", EASEL_MODELS_FILE=str(models),
                   EASEL_API_KEYS=f"ops:{hash_key('sk-ops')},alice:{hash_key('sk-alice')}",
                   EASEL_ADMIN_KEYS="ops", EASEL_ADMIN_TIMEOUT_SECONDS="30")
    worker = start_worker(env, "recovery-worker")
    gateway = Gateway(env, log=tmp / "gateway.log").start()
    try:
        yield gateway, aside
    finally:
        gateway.stop()
        stop(worker)
        redis.stop()


def _generate(gw: Gateway, model: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/images/generations", headers=ALICE, timeout=120,
                      json={"model": model, "prompt": "a red circle", "size": "64x64",
                            "response_format": "b64_json", "steps": 2})


def _load(gw: Gateway) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/admin/pipelines/mended/load", headers=OPS, timeout=60)


def _recover(gw: Gateway, aside: Path, failed_status: tuple[int, str]) -> None:
    """What the operator sees and does: the failure, a load that still fails, the fix, a load."""
    ready = wait_until(lambda: (r := _readiness(gw)) and "failed" in r and r, "the failure", 90)
    assert (ready["code"], ready["status"]) == failed_status
    assert "component 'unet'" in ready["failed"]["mended"]
    refused = _generate(gw, "mended")
    assert refused.status_code == 503
    assert "pipeline mended failed to load" in refused.json()["error"]["message"]

    r = _load(gw)  # not fixed yet: the reason again, and nothing changes
    assert r.status_code == 500 and r.json()["error"]["code"] == "load_failed", r.text
    assert "component 'unet'" in r.json()["error"]["message"]

    aside.rename(aside.parent / "mended-weights" / "unet")
    r = _load(gw)
    assert r.status_code == 200, r.text
    (states,) = r.json()["workers"].values()
    assert states["mended"]["state"] == "resident"
    # The worker beat before it answered; a periodic beat already under way may still write
    # the old state once, so allow one heartbeat (2 s).
    ready = wait_until(lambda: (r := _readiness(gw)) and r["status"] == "ready" and r, "ready", 5)
    assert ready["code"] == 200 and "failed" not in ready
    (worker,) = httpx.get(f"{gw.base_url}/v1/admin/workers", headers=OPS).json()["data"]
    assert worker["failed"] == {} and "easel:mended" in worker["queues"]
    listed = httpx.get(f"{gw.base_url}/v1/models", headers=ALICE).json()["data"]
    assert {m["id"]: m["workers"] for m in listed}["mended"] == 1
    r = _generate(gw, "mended")
    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert image.size == (64, 64)


def test_a_failed_pipeline_beside_a_good_one_loads_once_fixed(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw, aside in _stack(tmp_path_factory.mktemp("beside"), GOOD):
        _recover(gw, aside, (200, "degraded"))
        assert _generate(gw, "good").status_code == 200  # served all along


def test_a_worker_whose_only_pipeline_failed_stays_reachable_and_loads_it_once_fixed(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw, aside in _stack(tmp_path_factory.mktemp("alone"), ""):
        _recover(gw, aside, (503, "failed"))
