"""Admission is atomic and leased: a burst cannot overshoot the queue cap, and a key's
concurrency slots free themselves after a gateway crash even while its client keeps retrying."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from core import liveness
from service.auth import hash_key
from tests.support import Gateway, RedisServer, base_env, stop, wait_port_closed

BODY = {"prompt": "a red circle", "model": "easel-shapes", "size": "64x64"}


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    # A worker that beats but never takes a job: admitted jobs stay queued.
    liveness.beat(Redis.from_url(server.url), "idle-worker", ["easel:shapes"], 120)
    yield server
    server.stop()


async def _burst(url: str, n: int, headers: dict[str, str] | None = None) -> list[int]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        answers = await asyncio.gather(*(client.post(url, json=BODY, headers=headers or {})
                                         for _ in range(n)))
    return [r.status_code for r in answers]


def test_a_burst_never_overshoots_the_queue_cap(redis: RedisServer, tmp_path: Path) -> None:
    env = base_env(redis.url, tmp_path, EASEL_MAX_QUEUE_DEPTH="20",
                   EASEL_REQUEST_TIMEOUT_SECONDS="3")
    gateway = Gateway(env).start()
    try:
        codes = asyncio.run(_burst(f"{gateway.base_url}/v1/images/generations", 80))
    finally:
        gateway.stop()
    admitted = [c for c in codes if c != 429]
    assert set(admitted) == {504}  # nobody renders: every admitted request times out
    assert len(admitted) == 20, codes
    assert Redis.from_url(redis.url).llen("rq:queue:easel:shapes") == 20


def _post_quietly(url: str, headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # its gateway is killed under it
        httpx.post(url, json=BODY, headers=headers, timeout=30)


def test_a_crashed_gateways_slots_free_themselves_despite_retries(
        redis: RedisServer, tmp_path: Path) -> None:
    env = base_env(redis.url, tmp_path, EASEL_AUTH="required",
                   EASEL_API_KEYS=f"dave:{hash_key('sk-dave')}", EASEL_KEY_MAX_CONCURRENT="2",
                   EASEL_KEY_REQUESTS_PER_MINUTE="0",  # the retrying client is not rate-limited
                   EASEL_LEASE_SECONDS="5", EASEL_REQUEST_TIMEOUT_SECONDS="60")
    headers = {"authorization": "Bearer sk-dave"}
    first = Gateway(env).start()
    url = f"{first.base_url}/v1/images/generations"
    waiting = [threading.Thread(target=_post_quietly, args=(url, headers)) for _ in range(2)]
    for thread in waiting:  # two requests in flight when the gateway dies
        thread.start()
    leases = Redis.from_url(redis.url)
    deadline = time.monotonic() + 15
    while leases.zcard("easel:leases:dave") < 2:
        assert time.monotonic() < deadline, "the two requests were not admitted"
        time.sleep(0.05)
    stop(first.proc, signal.SIGKILL)
    for thread in waiting:
        thread.join(30)
    wait_port_closed(first.port)  # its processes die with it (PR_SET_PDEATHSIG), within ms
    second = Gateway(dict(env, EASEL_REQUEST_TIMEOUT_SECONDS="1"), port=first.port).start()
    try:
        codes: list[int] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # a client retrying as fast as it can
            r = httpx.post(url, json=BODY, headers=headers, timeout=30)
            codes.append(r.status_code)
            if r.status_code != 429:
                break
            assert r.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert codes[0] == 429, codes  # the dead gateway's leases still counted at first...
        assert codes[-1] == 504, codes  # ...then admitted: it waited for a render, timed out
        assert time.monotonic() < deadline
    finally:
        second.stop()
