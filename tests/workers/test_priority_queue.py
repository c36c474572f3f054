"""Workers take live queues before batch queues, and a dequeued job stays rescuable."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq.exceptions import DequeueTimeout
from rq.serializers import JSONSerializer

from core.allowed_jobs import EaselJob
from core.jobs import RENDER_TASK, batch_queue
from workers.priority_queue import PriorityQueue


def _queues(redis: Redis) -> list[PriorityQueue]:
    return [PriorityQueue(name, connection=redis, serializer=JSONSerializer)
            for name in ("easel:a", "easel:b", batch_queue("easel:a"), batch_queue("easel:b"))]


def _take(redis: Redis, timeout: int | None = None) -> str | None:
    found = PriorityQueue.dequeue_any(_queues(redis), timeout, connection=redis,
                                      job_class=EaselJob, serializer=JSONSerializer)
    return None if found is None else f"{found[1].name}/{found[0].id}"


def test_live_jobs_always_come_before_batch_jobs(redis: Redis) -> None:
    live_a, live_b, batch_a, _ = _queues(redis)
    for queue, job_id in ((batch_a, "b1"), (live_b, "l2"), (batch_a, "b2"), (live_a, "l1")):
        queue.enqueue_call(RENDER_TASK, args=({},), job_id=job_id)
    assert [_take(redis) for _ in range(5)] == [
        "easel:a/l1", "easel:b/l2", "easel:a:batch/b1", "easel:a:batch/b2", None]


def test_a_dequeued_job_waits_on_its_intermediate_list_until_started(redis: Redis) -> None:
    batch = _queues(redis)[2]
    batch.enqueue_call(RENDER_TASK, args=({},), job_id="b1")
    assert _take(redis) == "easel:a:batch/b1"
    # Where the reaper finds it should the worker die before starting it (core.reaping).
    assert redis.lrange(batch.intermediate_queue_key, 0, -1) == [b"b1"]


def test_an_idle_dequeue_blocks_briefly_then_lets_rq_loop(redis: Redis) -> None:
    t0 = time.monotonic()
    with pytest.raises(DequeueTimeout):
        _take(redis, timeout=30)
    assert time.monotonic() - t0 < 2  # RQ beats and asks again; a batch job waits < 1 s
