"""A burst of waiting requests larger than redis-py's default connection pool (100 per
process): every one is admitted and waits, none is refused 503 "Too many connections"."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import httpx
from redis import Redis

from benchmarks.common import raise_fd_limit
from benchmarks.lean_http import LeanClient
from core import liveness
from tests.support import Gateway, RedisServer, base_env

BURST = 1000  # at once, by a client cheap enough for that; it failed 1 run in 2 before


def test_a_burst_past_the_redis_pool_default_is_admitted(tmp_path: Path) -> None:
    raise_fd_limit()  # a socket per request, here and in the gateway
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url)
    done = threading.Event()

    def beat() -> None:  # a worker that never takes a job: every request waits
        while not done.is_set():
            liveness.beat(redis, "burst-fake-worker", ["easel:shapes"], 15)
            done.wait(2)

    threading.Thread(target=beat, daemon=True).start()
    gateway = Gateway(base_env(server.url, tmp_path, EASEL_GATEWAY_PROCESSES="2",
                               EASEL_REQUEST_TIMEOUT_SECONDS="60",
                               EASEL_MAX_QUEUE_DEPTH="100000")).start()

    async def burst() -> tuple[float, list[object]]:
        body = {"model": "easel-shapes", "prompt": "a red circle", "size": "64x64"}
        async with LeanClient("127.0.0.1", gateway.port, BURST, 60) as client, \
                httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as probe:
            tasks = [asyncio.create_task(client.post_json("/v1/images/generations", body, {}))
                     for _ in range(BURST)]
            waiting, deadline = 0.0, time.monotonic() + 60
            answered: list[object] = []
            while waiting < BURST and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                answered = [t.exception() or t.result() for t in tasks if t.done()]
                if answered:  # nothing may answer yet: every job waits for its worker
                    break
                found = re.search(r"^easel_requests_waiting\s+(\S+)$",
                                  (await probe.get("/metrics")).text, re.M)
                waiting = float(found.group(1)) if found else 0.0
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return waiting, answered

    try:
        waiting, answered = asyncio.run(burst())
    finally:
        done.set()
        gateway.stop()
        server.stop()
    assert answered == [] and waiting == BURST
