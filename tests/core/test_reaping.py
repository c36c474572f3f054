"""The reaper against a real Redis: abandoned jobs are retried once or failed with the outcome
TTL the settings give, and concurrent passes never hand one job back twice."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from core.jobs import outcome_key
from core.reaping import LOCK_KEY, reap

QUEUE = "easel:shapes"


def _abandoned(redis: Redis, retries: int) -> Job:
    """A job a worker had started, whose registry entry expired (its worker went silent)."""
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    job = queue.enqueue_call("workers.tasks.render", args=({},),
                             retry=Retry(max=retries) if retries else None)
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer)
    redis.zadd(registry.key, {f"{job.id}:dead-execution": time.time() - 1})  # already expired
    return job


def _entries(redis: Redis) -> int:
    return int(redis.zcard(StartedJobRegistry(QUEUE, connection=redis).key))


def test_an_abandoned_job_out_of_retries_fails_with_the_configured_outcome_ttl(
        redis: Redis) -> None:
    job = _abandoned(redis, retries=0)
    assert reap(redis, [QUEUE], outcome_ttl=77) == 1
    assert 0 < redis.ttl(outcome_key(job.id)) <= 77
    assert b"died" in redis.get(outcome_key(job.id))


def test_an_abandoned_job_with_retries_is_queued_again_once(redis: Redis) -> None:
    job = _abandoned(redis, retries=2)
    assert reap(redis, [QUEUE], 60) == 1
    assert reap(redis, [QUEUE], 60) == 0
    assert Queue(QUEUE, connection=redis).get_job_ids() == [job.id]


def test_a_pass_runs_only_while_no_other_holds_the_lock(redis: Redis) -> None:
    _abandoned(redis, retries=2)
    redis.set(LOCK_KEY, "another-process", px=30_000)
    assert reap(redis, [QUEUE], 60) == 0 and _entries(redis) == 1
    redis.delete(LOCK_KEY)
    assert reap(redis, [QUEUE], 60) == 1 and _entries(redis) == 0
    assert redis.get(LOCK_KEY) is None  # released after the pass


def test_a_job_stranded_between_dequeue_and_start_goes_back_to_its_queue(redis: Redis) -> None:
    """RQ moves a dequeued id onto an intermediate list; a worker killed before starting the
    job leaves it there.  After `stranded_after` seconds the reaper puts it back in front."""
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    job = queue.enqueue_call("workers.tasks.render", args=({},))
    redis.lmove(queue.key, queue.intermediate_queue_key)  # what a dequeue does
    assert reap(redis, [QUEUE], 60, stranded_after=0.2) == 0  # first seen now
    assert queue.get_job_ids() == []
    time.sleep(0.3)  # the stranded-after window (a setting: 0.2 s here)
    assert reap(redis, [QUEUE], 60, stranded_after=0.2) == 1
    assert queue.get_job_ids() == [job.id]
    assert redis.llen(queue.intermediate_queue_key) == 0


def test_a_started_job_is_never_taken_for_a_stranded_one(redis: Redis) -> None:
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    job = queue.enqueue_call("workers.tasks.render", args=({},))
    redis.lmove(queue.key, queue.intermediate_queue_key)
    registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer)
    redis.zadd(registry.key, {f"{job.id}:live-execution": time.time() + 60})
    for _ in range(2):
        assert reap(redis, [QUEUE], 60, stranded_after=0) == 0
    assert queue.get_job_ids() == []


def test_a_job_abandoned_before_leaving_the_intermediate_list_is_queued_once(
        redis: Redis) -> None:
    job = _abandoned(redis, retries=2)
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    redis.rpush(queue.intermediate_queue_key, job.id)  # its dead worker never removed it
    for _ in range(3):
        reap(redis, [QUEUE], 60, stranded_after=0)
    assert queue.get_job_ids() == [job.id]


def test_reaped_and_rescued_jobs_are_counted_for_the_gateways_metrics(redis: Redis) -> None:
    """Jobs re-run by the reaper counted nowhere: now easel_job_retries_total and
    easel_job_failures_total (exported by any gateway) say how many, and why."""
    from core.reaping import REAPED_KEY
    from core.telemetry import JOBS_KEY

    _abandoned(redis, retries=1)
    _abandoned(redis, retries=0)
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    queue.enqueue_call("workers.tasks.render", args=({},))
    redis.lmove(queue.key, queue.intermediate_queue_key)  # dequeued by a worker that died
    reap(redis, [QUEUE], 60, stranded_after=0)
    reap(redis, [QUEUE], 60, stranded_after=0)
    assert redis.hgetall(JOBS_KEY) == {b"retried:worker_lost": b"1", b"failed:worker_lost": b"1",
                                       b"retried:stranded": b"1"}
    assert redis.get(REAPED_KEY) == b"2"
