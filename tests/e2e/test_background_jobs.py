"""Background jobs and Idempotency-Key against a real gateway and worker (docs/async.md)."""

from __future__ import annotations

import base64
import io
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from redis import Redis

from core import liveness
from service.auth import hash_key
from tests.conftest import FAST
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

KEYS = f"alice:{hash_key('sk-alice')},bob:{hash_key('sk-bob')}"
ALICE = {"authorization": "Bearer sk-alice"}
BOB = {"authorization": "Bearer sk-bob"}
ASYNC = {"Prefer": "respond-async"}
BODY = {"prompt": "a red circle", "model": "easel-shapes", "size": "64x64",
        "response_format": "b64_json", "seed": 7, **FAST}


def _env(redis_url: str, data: Path, **extra: str) -> dict[str, str]:
    return base_env(redis_url, data, EASEL_AUTH="required", EASEL_API_KEYS=KEYS,
                    EASEL_BACKGROUND_POLL_SECONDS="0.1", EASEL_BACKGROUND_LEASE_SECONDS="2",
                    **extra)


def _pixels(b64: str) -> bytes:
    """Decoded pixels: each file's C2PA manifest differs, its pixels must not."""
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGBA").tobytes()


def _wait(base: str, job_id: str, headers: dict[str, str], until: tuple[str, ...] = (
        "completed", "failed", "cancelled"), timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/v1/images/jobs/{job_id}", headers=headers).json()
        if job["status"] in until:
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Redis]]:
    """A gateway with keys, and one real worker, on a Redis of their own."""
    data = tmp_path_factory.mktemp("bg")
    redis = RedisServer(data / "redis").start()
    env = _env(redis.url, data)
    worker = start_worker(env, "bg-worker")
    gateway = Gateway(env).start()
    try:
        wait_ready(gateway.base_url)
        yield gateway.base_url, Redis.from_url(redis.url)
    finally:
        gateway.stop()
        stop(worker)
        redis.stop()


def test_a_background_job_answers_exactly_what_the_synchronous_call_does(
        live: tuple[str, Redis]) -> None:
    base, _ = live
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-alice", max_retries=0)
    extra = {k: v for k, v in BODY.items() if k not in ("prompt", "model", "size",
                                                         "response_format")}
    sync = client.images.generate(prompt=BODY["prompt"], model="easel-shapes", size="64x64",
                                  response_format="b64_json", extra_body=extra)
    raw = client.images.with_raw_response.generate(
        prompt=BODY["prompt"], model="easel-shapes", size="64x64", response_format="b64_json",
        extra_body=extra, extra_headers=ASYNC)
    assert raw.http_response.status_code == 202
    job = raw.http_response.json()
    assert job["object"] == "image.job" and job["id"].startswith("imgjob_")
    assert raw.http_response.headers["location"] == f"/v1/images/jobs/{job['id']}"
    done = _wait(base, job["id"], ALICE)
    assert done["status"] == "completed" and done["status_code"] == 200
    result = done["result"]
    assert set(result) == set(sync.model_dump(exclude_none=True))
    assert [d["seed"] for d in result["data"]] == [d.seed for d in sync.data]
    assert _pixels(result["data"][0]["b64_json"]) == _pixels(sync.data[0].b64_json or "")


def test_jobs_are_their_owners_only_and_stream_is_refused(live: tuple[str, Redis]) -> None:
    base, _ = live
    url = f"{base}/v1/images/generations"
    job = httpx.post(url, json=BODY, headers={**ALICE, **ASYNC}).json()
    assert httpx.get(f"{base}/v1/images/jobs/{job['id']}", headers=BOB).status_code == 404
    assert httpx.delete(f"{base}/v1/images/jobs/{job['id']}", headers=BOB).status_code == 404
    assert _wait(base, job["id"], ALICE)["status"] == "completed"
    streaming = httpx.post(url, json={**BODY, "stream": True}, headers={**ALICE, **ASYNC})
    assert streaming.status_code == 400 and streaming.json()["error"]["param"] == "stream"
    bad = httpx.post(url, json={**BODY, "size": "7x7"}, headers={**ALICE, **ASYNC})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "size"


def test_a_multipart_edit_runs_in_the_background(live: tuple[str, Redis]) -> None:
    base, _ = live
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(buf, "PNG")
    answer = httpx.post(f"{base}/v1/images/edits", headers={**ALICE, **ASYNC},
                        files={"image": ("a.png", buf.getvalue(), "image/png")},
                        data={"prompt": "a blue square", "model": "easel-shapes",
                              "size": "64x64", "response_format": "b64_json", "steps": "4"})
    assert answer.status_code == 202, answer.text
    done = _wait(base, answer.json()["id"], ALICE)
    assert done["status"] == "completed", done
    assert done["result"]["data"][0]["b64_json"]


def test_idempotency_key_replays_the_first_answer_without_a_second_render(
        live: tuple[str, Redis]) -> None:
    base, redis = live
    url = f"{base}/v1/images/generations"
    headers = {**ALICE, "Idempotency-Key": "order-42"}
    renders = len(redis.keys("rq:job:*"))
    first = httpx.post(url, json=BODY, headers=headers, timeout=60)
    again = httpx.post(url, json=BODY, headers=headers, timeout=60)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert len(redis.keys("rq:job:*")) == renders + 1  # one render for both
    other = httpx.post(url, json={**BODY, "seed": 8}, headers=headers)
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # Scoped per key: bob's "order-42" is his own.
    assert httpx.post(url, json={**BODY, "seed": 8}, headers={**BOB, "Idempotency-Key":
                                                              "order-42"}).status_code == 200
    # A background submit replays its 202 and the same job.
    async_headers = {**ALICE, **ASYNC, "Idempotency-Key": "order-43"}
    job = httpx.post(url, json=BODY, headers=async_headers)
    assert job.status_code == 202
    assert httpx.post(url, json=BODY, headers=async_headers).json()["id"] == job.json()["id"]


@pytest.fixture()
def idle(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis where a worker heartbeats but never takes a job: renders stay queued."""
    server = RedisServer(tmp_path / "redis").start()
    liveness.beat(Redis.from_url(server.url), "idle-worker",
                  ["easel:shapes", "easel:shapes:batch"], 120)
    yield server
    server.stop()


def test_delete_cancels_queued_jobs_held_or_not(idle: RedisServer, tmp_path: Path) -> None:
    gateway = Gateway(_env(idle.url, tmp_path, EASEL_BACKGROUND_MAX_LIVE="1")).start()
    base, redis = gateway.base_url, Redis.from_url(idle.url)
    try:
        url = f"{base}/v1/images/generations"
        first = httpx.post(url, json=BODY, headers={**ALICE, **ASYNC}).json()
        second = httpx.post(url, json=BODY, headers={**ALICE, **ASYNC}).json()
        deadline = time.monotonic() + 10  # the runner holds one job: its render is queued
        while redis.llen("rq:queue:easel:shapes") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for job in (first, second):
            view = httpx.get(f"{base}/v1/images/jobs/{job['id']}", headers=ALICE).json()
            assert view["status"] == "queued" and view["queue_position"] == 0, view
        for job in (second, first):  # the pending one, then the one whose render is queued
            cancelled = httpx.delete(f"{base}/v1/images/jobs/{job['id']}", headers=ALICE)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert redis.llen("rq:queue:easel:shapes") == 0
        assert _wait(base, first["id"], ALICE)["status"] == "cancelled"
    finally:
        gateway.stop()


def test_a_job_survives_its_gateway_and_renders_once(idle: RedisServer, tmp_path: Path) -> None:
    env = _env(idle.url, tmp_path)
    first = Gateway(env).start()
    redis = Redis.from_url(idle.url)
    job = httpx.post(f"{first.base_url}/v1/images/generations", json=BODY,
                     headers={**ALICE, **ASYNC}).json()
    deadline = time.monotonic() + 10
    while redis.llen("rq:queue:easel:shapes") < 1:  # its render is queued; nobody takes it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stop(first.proc, signal.SIGKILL)
    second = Gateway(env).start()
    worker = start_worker(env, "late-worker")
    try:  # the lease lapses, the second gateway re-claims the job and waits for that render
        done = _wait(second.base_url, job["id"], ALICE, timeout=90)
        assert done["status"] == "completed", done
        assert len(redis.keys("rq:job:*")) == 1  # rendered once, never queued again
    finally:
        second.stop()
        stop(worker)
