"""The completion waiter against a real Redis: woken by pub/sub, safe when a message is lost."""

from __future__ import annotations

import asyncio
import time

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.jobs import Outcome, outcome_key, publish_outcome
from service.waiter import CompletionWaiter


def _client(redis: Redis) -> AsyncRedis:
    return AsyncRedis.from_url("redis://{host}:{port}/0".format(
        **redis.connection_pool.connection_kwargs))


def test_a_waiter_wakes_when_the_outcome_is_published(redis: Redis) -> None:
    async def run() -> tuple[Outcome | None, float]:
        waiter = CompletionWaiter(_client(redis), recheck_seconds=30)
        await waiter.start()
        await asyncio.sleep(0.1)  # subscribed
        t0 = time.monotonic()
        waiting = asyncio.ensure_future(waiter.wait("job-1", timeout=20))
        await asyncio.sleep(0.1)
        publish_outcome(redis, Outcome(job_id="job-1", status="finished"), ttl=60)
        outcome = await waiting
        await waiter.stop()
        return outcome, time.monotonic() - t0

    outcome, seconds = asyncio.run(run())
    assert outcome is not None and outcome.status == "finished"
    assert seconds < 5  # woken by the message, not by the 30 s re-check


def test_a_lost_message_is_made_up_for_by_the_recheck(redis: Redis) -> None:
    async def run() -> Outcome | None:
        waiter = CompletionWaiter(_client(redis), recheck_seconds=0.2)  # no listener started
        waiting = asyncio.ensure_future(waiter.wait("job-2", timeout=10))
        await asyncio.sleep(0.1)
        redis.set(outcome_key("job-2"), Outcome(job_id="job-2", status="failed",
                                                error="x").model_dump_json())
        return await waiting

    outcome = asyncio.run(run())
    assert outcome is not None and outcome.status == "failed"


def test_no_outcome_within_the_timeout_is_none(redis: Redis) -> None:
    async def run() -> Outcome | None:
        waiter = CompletionWaiter(_client(redis), recheck_seconds=0.1)
        return await waiter.wait("job-3", timeout=0.3)

    assert asyncio.run(run()) is None


def test_a_job_listened_for_before_its_enqueue_is_heard_without_a_first_read(
        redis: Redis) -> None:
    """The dispatcher listens before it enqueues, so the wait skips its first GET (one round
    trip per request); an announcement that comes before the wait starts is still heard."""
    async def run() -> tuple[Outcome | None, int, int]:
        waiter = CompletionWaiter(_client(redis), recheck_seconds=30)
        await waiter.start()
        await asyncio.sleep(0.1)  # subscribed
        expected = waiter.expect("job-4")
        publish_outcome(redis, Outcome(job_id="job-4", status="finished"), ttl=60)
        await asyncio.sleep(0.2)  # announced before anyone waits
        gets = redis.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
        outcome = await asyncio.wait_for(waiter.wait("job-4", 20, expected), 5)
        gets = redis.info("commandstats").get("cmdstat_get", {}).get("calls", 0) - gets
        dropped = waiter.expect("job-5")
        waiter.forget("job-5", dropped)  # refused before its enqueue: nothing left behind
        await waiter.stop()
        return outcome, gets, waiter.waiting

    outcome, gets, left = asyncio.run(run())
    assert outcome is not None and outcome.status == "finished"
    assert gets == 1  # the read after the wake-up, none before
    assert left == 0
