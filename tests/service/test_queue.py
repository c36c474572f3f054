"""The enqueue the admission script runs is RQ's own: the same job hash and queue entries."""

from __future__ import annotations

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from core.jobs import RenderJob
from service.queue import JobQueue

# Set by RQ at the moment of the call, so they differ between any two enqueues.
STAMPS = {"created_at", "enqueued_at"}


def _job(job_id: str) -> RenderJob:
    return RenderJob(job_id=job_id, kind="generate", model="easel-shapes", pipeline="shapes",
                     prompt="a red circle", width=64, height=64, n=1, seeds=[7], steps=10,
                     guidance=5.0, output_format="png", private_id="p-" + job_id)


def test_the_recorded_commands_write_what_rq_itself_writes(redis: Redis) -> None:
    queue = JobQueue(redis, job_timeout=600, retries=2, result_ttl=3600)
    queue.enqueue("easel:shapes", _job("by-rq"))
    queue.learn_server_version()
    assert queue.knows_server_version
    for command in queue.enqueue_commands("easel:shapes", _job("recorded")):
        redis.execute_command(*command)
    assert redis.lrange("rq:queue:easel:shapes", 0, -1) == [b"by-rq", b"recorded"]
    assert redis.smembers("rq:queues") == {b"rq:queue:easel:shapes"}
    by_rq, recorded = (Job.fetch(i, connection=redis, serializer=JSONSerializer)
                       for i in ("by-rq", "recorded"))
    assert recorded.args[0] == {**by_rq.args[0], "job_id": "recorded", "private_id": "p-recorded"}
    mine = {k: v for k, v in recorded.to_dict().items() if k not in STAMPS | {"data"}}
    theirs = {k: v for k, v in by_rq.to_dict().items() if k not in STAMPS | {"data"}}
    assert mine == theirs and recorded.get_status() == "queued"
    assert redis.ttl("rq:job:recorded") == redis.ttl("rq:job:by-rq")
