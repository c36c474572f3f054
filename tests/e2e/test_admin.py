"""The admin API end to end (service/admin.py, workers/control.py): a real gateway and worker on
a private Redis. Unloading takes a pipeline's models out of /v1/models and /readyz says so;
loading brings them back; only admin keys get in; an idle pipeline sleeps and wakes for a job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth import hash_key
from tests.conftest import FAST
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready, wait_until

OPS = {"authorization": "Bearer sk-ops"}
ALICE = {"authorization": "Bearer sk-alice"}



def _stack(tmp: Path, **worker_env: str) -> Iterator[Gateway]:
    redis = RedisServer(tmp / "redis").start()
    env = base_env(redis.url, tmp, EASEL_AUTH="required",
                   EASEL_API_KEYS=f"ops:{hash_key('sk-ops')},alice:{hash_key('sk-alice')}",
                   EASEL_ADMIN_KEYS="ops", EASEL_ADMIN_TIMEOUT_SECONDS="60")
    worker = start_worker(dict(env, **worker_env), "admin-worker")
    gateway = Gateway(env, log=tmp / "gateway.log").start()
    try:
        wait_ready(gateway.base_url)
        yield gateway
    finally:
        gateway.stop()
        stop(worker)
        redis.stop()


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from _stack(tmp_path_factory.mktemp("admin"))


def _workers(gw: Gateway) -> list[dict[str, Any]]:
    r = httpx.get(f"{gw.base_url}/v1/admin/workers", headers=OPS)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def _models(gw: Gateway) -> list[str]:
    r = httpx.get(f"{gw.base_url}/v1/models", headers=ALICE)
    return [m["id"] for m in r.json()["data"]]


def _generate(gw: Gateway) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/images/generations", headers=ALICE, timeout=120,
                      json={"model": "easel-shapes", "prompt": "a red circle", "size": "64x64",
                            "response_format": "b64_json", **FAST})


def test_only_admin_keys_get_in(managed: Gateway) -> None:
    url = f"{managed.base_url}/v1/admin/workers"
    r = httpx.get(url, headers=ALICE)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_permissions"
    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{managed.base_url}/v1/admin/pipelines/shapes/unload", headers=ALICE)
    assert r.status_code == 403
    r = httpx.post(f"{managed.base_url}/v1/admin/pipelines/nope/load", headers=OPS)
    assert r.status_code == 404 and r.json()["error"]["code"] == "pipeline_not_found"


def test_workers_list_their_resident_pipelines(managed: Gateway) -> None:
    (worker,) = _workers(managed)
    shapes = worker["pipelines"]["shapes"]
    assert shapes["state"] == "resident" and shapes["bytes"] > 1_000_000
    assert shapes["load_seconds"] > 0 and shapes["adapters"] == ["outline"]
    assert "easel:shapes" in worker["queues"]


def test_unload_then_load_changes_models_and_readiness(managed: Gateway) -> None:
    base = managed.base_url
    before = _models(managed)
    assert "easel-shapes" in before
    r = httpx.post(f"{base}/v1/admin/pipelines/shapes/unload", headers=OPS, timeout=90)
    assert r.status_code == 200, r.text
    (states,) = r.json()["workers"].values()
    assert states["shapes"]["state"] == "unloaded"
    # The heartbeat says so at once: the list drops every model of the pipeline.
    wait_until(lambda: _models(managed) == [], "models to leave /v1/models", 10)
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unloaded" and ready.json()["unloaded"] == ["shapes"]
    refused = _generate(managed)
    assert refused.status_code == 503
    assert "unloaded through the admin API" in refused.json()["error"]["message"]
    assert httpx.get(f"{base}/v1/models/easel-shapes", headers=ALICE).json()["workers"] == 0

    r = httpx.post(f"{base}/v1/admin/pipelines/shapes/load", headers=OPS, timeout=90)
    assert r.status_code == 200, r.text
    assert wait_until(lambda: _models(managed) == before, "models to come back", 10)
    ready = httpx.get(f"{base}/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert "unloaded" not in ready.json()
    served = wait_until(lambda: _generate(managed).status_code == 200 or None, "a generation", 30)
    assert served


def test_a_bad_reload_changes_nothing_and_a_good_one_adds_models(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("reload")
    catalog = tmp / "models.toml"
    catalog.write_text('[pipelines.shapes]\npath = "embedded:shapes"\nnative_size = 64\n'
                       '[[models]]\nid = "one"\npipeline = "shapes"\n')
    redis = RedisServer(tmp / "redis").start()
    env = base_env(redis.url, tmp, EASEL_AUTH="required", EASEL_MODELS_FILE=str(catalog),
                   EASEL_API_KEYS=f"ops:{hash_key('sk-ops')},alice:{hash_key('sk-alice')}",
                   EASEL_ADMIN_KEYS="ops")
    worker = start_worker(env, "reload-worker")
    gw = Gateway(env, log=tmp / "gateway.log").start()
    try:
        wait_ready(gw.base_url)
        catalog.write_text(catalog.read_text() + '[[models]]\nid = "two"\npipeline = "shapse"\n')
        r = httpx.post(f"{gw.base_url}/v1/admin/catalog/reload", headers=OPS, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_catalog"
        assert "unknown pipeline 'shapse'" in r.json()["error"]["message"]
        assert _models(gw) == ["one"]
        catalog.write_text(catalog.read_text().replace("shapse", "shapes"))
        r = httpx.post(f"{gw.base_url}/v1/admin/catalog/reload", headers=OPS, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["models"] == ["one", "two"] and r.json()["failed"] == {}
        assert _models(gw) == ["one", "two"]
    finally:
        gw.stop()
        stop(worker)
        redis.stop()


def test_an_idle_pipeline_sleeps_and_wakes_for_the_next_job(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    for gw in _stack(tmp_path_factory.mktemp("idle"), EASEL_IDLE_UNLOAD_SECONDS="1"):
        def asleep(gw: Gateway = gw) -> bool:
            return bool(_workers(gw)[0]["pipelines"]["shapes"]["state"] == "asleep")

        wait_until(asleep, "the idle pipeline to sleep", 30)
        assert "easel-shapes" in _models(gw)  # still served: the next job loads it
        assert httpx.get(f"{gw.base_url}/readyz").status_code == 200
        assert _generate(gw).status_code == 200
