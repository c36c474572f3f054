"""Admission decided in one Redis script: cap, per-key rate and concurrency, leases that expire."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.errors import OpenAIError
from service.limits import Admission, ServiceRate

QUEUE_KEY = "rq:queue:easel:shapes"


def _admission(redis: Redis, **kw: float) -> tuple[AsyncRedis, Admission]:
    url = "redis://{host}:{port}/0".format(**redis.connection_pool.connection_kwargs)
    client = AsyncRedis.from_url(url)
    settings = {"max_queue_depth": 3, "per_minute": 0, "max_concurrent": 0,
                "lease_seconds": 30.0, **kw}
    return client, Admission(client, int(settings["max_queue_depth"]),
                             int(settings["per_minute"]), int(settings["max_concurrent"]),
                             settings["lease_seconds"])


async def _try(admission: Admission, key: str | None, lease_id: str) -> str:
    try:
        await admission.acquire(QUEUE_KEY, key, lease_id, "easel-shapes", lambda depth: 5.0)
    except OpenAIError as exc:
        return str(exc.code)
    return "admitted"


def test_the_queue_cap_counts_queued_jobs_and_admissions_not_yet_enqueued(redis: Redis) -> None:
    async def run() -> list[str]:
        client, admission = _admission(redis)
        redis.rpush(QUEUE_KEY, "already-queued")
        out = await asyncio.gather(*(_try(admission, None, f"r{i}") for i in range(5)))
        await client.aclose()
        return list(out)

    assert sorted(asyncio.run(run())) == ["admitted", "admitted", "queue_full", "queue_full",
                                          "queue_full"]


def test_a_refused_attempt_extends_nothing_and_a_lease_ends_on_its_own(redis: Redis) -> None:
    async def run() -> list[str]:
        client, admission = _admission(redis, max_queue_depth=100, max_concurrent=1,
                                       lease_seconds=1.0)
        first = await _try(admission, "alice", "a1")
        admission._held.clear()  # the gateway that held it died: nobody renews it
        refused = [await _try(admission, "alice", f"a{i}") for i in range(2, 5)]
        time.sleep(1.1)  # the lease under test (1 s) runs out
        after = await _try(admission, "alice", "a5")
        await client.aclose()
        return [first, *refused, after]

    assert asyncio.run(run()) == ["admitted", "concurrency_limit_exceeded",
                                  "concurrency_limit_exceeded", "concurrency_limit_exceeded",
                                  "admitted"]


def test_released_leases_free_their_slot_at_once(redis: Redis) -> None:
    async def run() -> list[str]:
        client, admission = _admission(redis, max_queue_depth=100, max_concurrent=1)
        lease = await admission.acquire(QUEUE_KEY, "bob", "b1", "m", lambda d: 1.0)
        await admission.release(lease)
        out = [await _try(admission, "bob", "b2")]
        await client.aclose()
        return out

    assert asyncio.run(run()) == ["admitted"]


def test_the_per_minute_rate_counts_every_attempt(redis: Redis) -> None:
    async def run() -> list[str]:
        client, admission = _admission(redis, max_queue_depth=100, per_minute=2)
        out = [await _try(admission, "carol", f"c{i}") for i in range(3)]
        await client.aclose()
        return out

    assert asyncio.run(run()) == ["admitted", "admitted", "rate_limit_exceeded"]


# No completions yet: 5 s; 30 just now: 30 per second (the span is at least 1 s) -> 10/30 s.
@pytest.mark.parametrize(("done", "depth", "expected"), [(0, 10, 5.0), (30, 10, 10 / 30)])
def test_retry_after_follows_the_measured_rate(done: int, depth: int, expected: float) -> None:
    rate = ServiceRate(window=60)
    for _ in range(done):
        rate.record("shapes")
    assert rate.retry_after("shapes", depth) == pytest.approx(expected, rel=0.05)


def test_an_admission_can_enqueue_in_its_own_round_trip(redis: Redis) -> None:
    """Admitted: the job's commands ran (it is in the queue list) and no reservation is left
    to clear; refused: nothing of the job was written."""
    async def run() -> tuple[str, str]:
        client, admission = _admission(redis, max_queue_depth=1)
        job = [("HSET", "rq:job:j1", "status", "queued"), ("RPUSH", QUEUE_KEY, "j1")]
        lease = await admission.acquire(QUEUE_KEY, None, "j1", "m", lambda d: 1.0, enqueue=job)
        assert not lease.reserved
        await admission.release(lease)  # nothing held: no round trip, nothing to undo
        refused = [("HSET", "rq:job:j2", "status", "queued"), ("RPUSH", QUEUE_KEY, "j2")]
        try:
            await admission.acquire(QUEUE_KEY, None, "j2", "m", lambda d: 1.0, enqueue=refused)
            second = "admitted"
        except OpenAIError as exc:
            second = str(exc.code)
        await client.aclose()
        return "admitted", second

    assert asyncio.run(run()) == ("admitted", "queue_full")
    assert redis.lrange(QUEUE_KEY, 0, -1) == [b"j1"]
    assert redis.hget("rq:job:j1", "status") == b"queued"
    assert not redis.exists("rq:job:j2")
    assert not redis.exists(f"easel:admitting:{QUEUE_KEY}")
