"""A catalog with corrupt LoRA adapter files, through a real gateway and worker: /readyz names
each failed adapter with its pipeline and reason while the pipeline stays ready, the good adapter
still renders, and a request naming a bad one gets a 503 naming `loras` that says why, whether
the gateway already knew (refused before queueing) or the worker found out at that job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready, wait_until

# `outline-bad` fails at start.  With a 1 MB adapter budget the worker preloads nothing after
# `outline` (1.2 MB), so `late-bad` is first read, and found corrupt, by the request naming it.
CATALOG = """
[pipelines.shapes]
path = "embedded:shapes"
native_size = 64

[[models]]
id = "shapes"
pipeline = "shapes"

[adapters.outline-bad]
path = "./bad.safetensors"
pipelines = ["shapes"]

[adapters.outline]
path = "embedded:shapes-outline"
pipelines = ["shapes"]

[adapters.late-bad]
path = "./late.safetensors"
pipelines = ["shapes"]
"""
FAILED = "adapter {} for pipeline shapes failed to load: "


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("adapter-failures")
    (root / "models.toml").write_text(CATALOG)
    # Corrupt: a safetensors header length with no JSON header after it.
    for name in ("bad", "late"):
        (root / f"{name}.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{")
    server = RedisServer(root / "redis").start()
    # Worker checks on every request: the test sees each heartbeat's news at once.
    env = base_env(server.url, root, EASEL_MODELS_FILE=str(root / "models.toml"),
                   EASEL_ADAPTER_MEMORY_MB="1", EASEL_WORKER_CHECK_SECONDS="0")
    worker = start_worker(env, "adapters")
    gateway = Gateway(env, log=root / "gateway.log").start()
    try:
        wait_ready(gateway.base_url, timeout=120)
        yield gateway.base_url
    finally:
        gateway.stop()
        stop(worker)
        server.stop()


def _generate(base_url: str, loras: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/images/generations", timeout=120, json={
        "model": "shapes", "prompt": "a red circle", "size": "64x64", "steps": 2, "seed": 1,
        "response_format": "b64_json", "quality": "low", "loras": loras})



def _assert_adapter_unavailable(r: httpx.Response, adapter: str) -> str:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("loras", "adapter_unavailable")
    assert FAILED.format(adapter) in error["message"]
    assert "SafetensorError" in error["message"] and "/" not in error["message"]  # no folders
    assert r.headers["x-should-retry"] == "false"
    return str(error["message"])


def test_failed_adapters_are_named_and_the_rest_serves(base_url: str) -> None:
    ready = httpx.get(f"{base_url}/readyz").json()
    assert ready["status"] == "ready" and ready["workers"] == {"shapes": 1}
    (why,) = ready["failed_adapters"]["shapes"].values()
    assert list(ready["failed_adapters"]) == ["shapes"]
    assert why.startswith(FAILED.format("outline-bad")) and "deserializing header" in why

    ok = _generate(base_url, [{"name": "outline"}])  # the pipeline and its good adapter serve
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["data"]) == 1 and ok.json()["data"][0]["b64_json"]

    # Known from the heartbeat: refused before queueing, with the workers' reason.
    t0 = time.monotonic()
    refused = _generate(base_url, [{"name": "outline"}, {"name": "outline-bad"}])
    message = _assert_adapter_unavailable(refused, "outline-bad")
    assert message == f"The adapter 'outline-bad' in 'loras' is unavailable: {why}"
    assert time.monotonic() - t0 < 5

    # Not known yet: the worker finds out at the job, fails it at once (no retries), and says so.
    failed = _generate(base_url, [{"name": "late-bad"}])
    assert _assert_adapter_unavailable(failed, "late-bad").startswith(
        "An adapter in 'loras' is unavailable: ")
    late = wait_until(lambda: httpx.get(f"{base_url}/readyz").json().get(
        "failed_adapters", {}).get("shapes", {}).get("late-bad"), "late-bad in /readyz", 15)
    assert late.startswith(FAILED.format("late-bad"))
    again = _generate(base_url, [{"name": "late-bad"}])  # from now on refused by the gateway
    assert _assert_adapter_unavailable(again, "late-bad").startswith("The adapter 'late-bad'")
    assert httpx.get(f"{base_url}/readyz").json()["status"] == "ready"
    # /v1/models tells which adapters cannot be used (the playground leaves those out).
    listed = {a["name"]: a for a in httpx.get(f"{base_url}/v1/models/shapes").json()["easel"][
        "adapters"]}
    assert listed["outline-bad"]["error"] == why
    assert listed["late-bad"]["error"].startswith(FAILED.format("late-bad"))
    assert "error" not in listed["outline"]
