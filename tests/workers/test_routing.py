"""Routing: a worker serves only the pipelines it holds, within its memory budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from core import liveness
from tests.support import RedisServer, base_env, start_worker, stop

CATALOG = """
[pipelines.small]
path = "embedded:shapes"
native_size = 64
[pipelines.second]
path = "embedded:shapes"
native_size = 64
[[models]]
id = "a"
pipeline = "small"
[[models]]
id = "b"
pipeline = "second"
"""


def _live(info: dict[str, Any]) -> list[str]:
    """The live queues a heartbeat announces (each comes with its batch twin, core.jobs)."""
    return [q for q in info["queues"] if not q.endswith(":batch")]


def _served(redis: Redis, timeout: float = 60) -> dict[str, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = liveness.live_workers(redis)
        if alive:
            return alive
        time.sleep(0.2)
    raise TimeoutError("no worker heartbeat")


def test_memory_budget_limits_what_a_worker_serves(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    env = base_env(server.url, tmp_path, EASEL_MODELS_FILE=str(catalog),
                   EASEL_MEMORY_BUDGET_MB="100", EASEL_METRICS_PORT="0")
    worker = start_worker(env, "budgeted")
    try:
        (info,) = _served(Redis.from_url(server.url)).values()
        assert _live(info) == ["easel:small"]  # 81 MB fits; a second copy would not
    finally:
        stop(worker)
        server.stop()


def test_pipelines_setting_selects_queues(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    env = base_env(server.url, tmp_path, EASEL_MODELS_FILE=str(catalog),
                   EASEL_PIPELINES="second", EASEL_METRICS_PORT="0")
    worker = start_worker(env, "second-only")
    try:
        (info,) = _served(Redis.from_url(server.url)).values()
        assert _live(info) == ["easel:second"]
    finally:
        stop(worker)
        server.stop()


def test_one_worker_holds_two_models_and_serves_both(tmp_path: Path) -> None:
    import openai

    from tests.support import Gateway, wait_ready

    server = RedisServer(tmp_path / "redis").start()
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG)
    env = base_env(server.url, tmp_path, EASEL_MODELS_FILE=str(catalog))
    worker = start_worker(env, "both")
    gateway = Gateway(env).start()
    try:
        wait_ready(gateway.base_url)
        (info,) = _served(Redis.from_url(server.url)).values()
        assert sorted(_live(info)) == ["easel:second", "easel:small"]
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0)
        for model, scheduler in (("a", None), ("b", "ddim")):  # each to its own queue
            r = client.images.generate(model=model, prompt="a red circle", size="256x256",
                                       response_format="b64_json",
                                       extra_body={"steps": 4, "scheduler": scheduler, "seed": 1})
            assert r.data[0].b64_json
    finally:
        gateway.stop()
        stop(worker)
        server.stop()


def test_a_pipeline_that_fails_to_load_is_named_and_the_rest_serve(tmp_path: Path) -> None:
    import httpx
    import openai

    from tests.support import Gateway

    server = RedisServer(tmp_path / "redis").start()
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG.replace('[pipelines.second]\npath = "embedded:shapes"',
                                       '[pipelines.second]\npath = "./no-such-folder"'))
    env = base_env(server.url, tmp_path, EASEL_MODELS_FILE=str(catalog), EASEL_METRICS_PORT="0")
    worker = start_worker(env, "half")
    gateway = Gateway(env).start()
    try:
        (info,) = _served(Redis.from_url(server.url)).values()
        assert _live(info) == ["easel:small"]  # the good pipeline serves
        assert "pipeline second failed to load:" in info["failed"]["second"]
        ready = httpx.get(f"{gateway.base_url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert "no-such-folder does not exist" in ready.json()["failed"]["second"]
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info_503:
            client.images.generate(model="b", prompt="a red circle", size="256x256")
        assert info_503.value.status_code == 503
        assert "pipeline second failed to load" in info_503.value.message
        r = client.images.generate(model="a", prompt="a red circle", size="256x256",
                                   response_format="b64_json", extra_body={"steps": 2})
        assert r.data[0].b64_json
    finally:
        gateway.stop()
        stop(worker)
        server.stop()


def test_a_worker_whose_every_pipeline_failed_stays_up_and_says_why(tmp_path: Path) -> None:
    import httpx

    from tests.support import Gateway

    server = RedisServer(tmp_path / "redis").start()
    catalog = tmp_path / "models.toml"
    catalog.write_text('[pipelines.only]\npath = "./missing"\n[[models]]\nid = "m"\n'
                       'pipeline = "only"\n')
    env = base_env(server.url, tmp_path, EASEL_MODELS_FILE=str(catalog), EASEL_METRICS_PORT="0")
    worker = start_worker(env, "none")
    gateway = Gateway(env).start()
    try:
        (info,) = _served(Redis.from_url(server.url)).values()
        assert info["queues"] == [] and "pipeline only failed to load" in info["failed"]["only"]
        ready = httpx.get(f"{gateway.base_url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert worker.poll() is None  # not crash-looping
    finally:
        gateway.stop()
        stop(worker)
        server.stop()
