"""Enqueue render jobs on RQ (one queue per pipeline) and read queue and worker state."""

from __future__ import annotations

from typing import Any

from rq import Queue, Retry
from rq.serializers import JSONSerializer

from core import liveness
from core.catalog import Catalog
from core.jobs import RENDER_TASK, RenderJob


class JobQueue:
    """Synchronous RQ calls; the gateway runs them in a thread so the event loop never blocks."""

    def __init__(self, redis: Any, job_timeout: int, retries: int, result_ttl: int) -> None:
        self.redis = redis
        self.job_timeout = job_timeout
        self.retries = retries
        self.result_ttl = result_ttl
        self._queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:  # stateless but for the server version RQ caches on it
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    def _enqueue_call(self, queue_name: str, job: RenderJob, pipeline: Any = None) -> None:
        self.queue(queue_name).enqueue_call(
            RENDER_TASK, args=(job.model_dump(mode="json"),), job_id=job.job_id,
            timeout=self.job_timeout, result_ttl=self.result_ttl, failure_ttl=self.result_ttl,
            retry=Retry(max=self.retries, enqueue_at_front=True) if self.retries else None,
            description=f"{job.kind} {job.model} n={job.n} {job.width}x{job.height}",
            pipeline=pipeline)

    def enqueue(self, queue_name: str, job: RenderJob) -> None:
        self._enqueue_call(queue_name, job)

    @property
    def knows_server_version(self) -> bool:
        return bool(getattr(self.redis, "__rq_redis_server_version", None))

    def learn_server_version(self) -> None:
        """RQ stamps jobs with the server's version, read once (INFO) and cached on the
        connection: done here, in a thread, so `enqueue_commands` never does I/O."""
        self.queue("easel:version").get_redis_server_version()

    def enqueue_commands(self, queue_name: str, job: RenderJob) -> list[tuple[Any, ...]]:
        """The Redis commands RQ's own enqueue issues for this job (job hash, queue set, queue
        push), recorded on a pipeline that never runs: service.limits.Admission runs them in
        the admission's round trip.  No I/O once `learn_server_version` ran."""
        recorder = self.redis.pipeline(transaction=True)
        self._enqueue_call(queue_name, job, recorder)
        commands = [tuple(args) for args, _ in recorder.command_stack]
        recorder.reset()
        return commands

    def depth(self, queue_name: str) -> int:
        return int(self.queue(queue_name).count)

    def fleet(self) -> liveness.Fleet:
        """One read of the workers' heartbeats, for every question a caller asks of them."""
        return liveness.Fleet.read(self.redis)

    def exists(self, job_id: str) -> bool:
        """Whether RQ still knows this job (queued, started, scheduled or finished)."""
        return bool(self.redis.exists(f"rq:job:{job_id}"))

    def origin(self, job_id: str) -> str | None:
        """The queue a job was put on, or None when RQ does not know it."""
        raw = self.redis.hget(f"rq:job:{job_id}", "origin")
        return raw.decode() if isinstance(raw, bytes) else raw

    def position(self, queue_name: str, job_id: str) -> int | None:
        """How many jobs are ahead of this one in its queue (workers take from the front);
        None when it is not waiting there (started, finished or never queued)."""
        index = self.redis.lpos(self.queue(queue_name).key, job_id)
        return None if index is None else int(index)

    def cancel_if_queued(self, queue_name: str, job_id: str) -> bool:
        """Take a job off the queue if no worker has started it (LREM wins or loses atomically)."""
        if self.queue(queue_name).remove(job_id) != 1:
            return False
        from rq.job import Job

        Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer).cancel()
        return True


def workers_per_pipeline(fleet: liveness.Fleet, catalog: Catalog) -> dict[str, int]:
    """Live workers of every pipeline in the catalog."""
    counts = fleet.counts([p.queue for p in catalog.pipelines.values()])
    return {p.name: counts[p.queue] for p in catalog.pipelines.values()}
