"""A worker started while Redis is down (a restart under a supervisor, a compose start order)
waits for it and then serves, instead of exiting for its supervisor to retry (chaos finding)."""

from __future__ import annotations

import time
from pathlib import Path

from redis import Redis

from core import liveness
from core.redis_checks import wait_for_redis
from tests.support import RedisServer, base_env, start_worker, stop


def test_wait_for_redis_backs_off_until_it_answers() -> None:
    class Flaky:
        calls = 0

        def ping(self) -> bool:
            self.calls += 1
            if self.calls < 4:
                from redis.exceptions import ConnectionError

                raise ConnectionError("connection refused")
            return True

    waits: list[float] = []
    assert wait_for_redis(Flaky(), sleep=waits.append)
    assert waits == [0.25, 0.5, 1.0]
    assert not wait_for_redis(Flaky(), stop=lambda: True)


def test_a_worker_started_before_redis_serves_once_it_is_up(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # its port is chosen, the server not started yet
    worker = start_worker(base_env(redis.url, tmp_path), "early")
    try:
        down_until = time.time() + 5  # long enough to load the model and meet the outage
        while time.time() < down_until:
            assert worker.poll() is None, "the worker exited while Redis was down"
            time.sleep(0.2)
        redis.start()
        deadline = time.time() + 60
        client = Redis.from_url(redis.url)
        while not liveness.live_workers(client):
            assert worker.poll() is None and time.time() < deadline
            time.sleep(0.1)
        assert next(iter(liveness.live_workers(client))).startswith("early-")
    finally:
        stop(worker)
        redis.stop()
