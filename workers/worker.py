"""A non-forking RQ worker that also announces final failures to the waiting gateway.

RQ's default worker forks a work horse per job, which would throw away a loaded pipeline each
time; `SimpleWorker` runs jobs in this process, where the pipelines stay resident.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import SimpleWorker
from rq.registry import StartedJobRegistry
from rq.worker import WorkerStatus

from core.jobs import Outcome
from workers import batching, runtime
from workers.heartbeat import Heartbeat
from workers.outcomes import publish

log = logging.getLogger("easel.worker")


class EaselWorker(SimpleWorker):
    outcome_ttl = 3600
    max_batch_images = 8
    max_batch_wait = 0.01  # seconds to wait for more compatible jobs after taking one
    liveness: Heartbeat | None = None  # not `heartbeat`: RQ has a method of that name

    def execute_job(self, job: Any, queue: Any) -> None:
        """Run `job`, plus any compatible queued jobs, as one pipeline call.

        Every drained job is prepared (started registry, worker name) before the batch runs,
        so a crash mid-batch leaves each of them visible to the reaper, exactly as a lone job.
        """
        extra: list[Any] = []
        if self.max_batch_images > 1:
            extra = batching.drain(job, queue, self.max_batch_images, self.max_batch_wait,
                                   self.serializer)
        batch = [job, *extra]
        executions = [self.prepare_execution(j) for j in batch]
        if self.liveness is not None:
            self.liveness.hold([(StartedJobRegistry(j.origin, self.connection).key,
                                  e.composite_key) for j, e in zip(batch, executions, strict=True)])
        if extra:
            try:
                head = batching.payload_of(job)
                loaded = runtime.current().pipelines[head.pipeline] if head else None
                if loaded is not None:
                    batching.render_batch(loaded, batch)
            except Exception:  # the batch failed: each job now runs alone and fails alone
                log.exception("batched call failed; running %d job(s) one by one", len(batch))
                batching.discard(batch)
        try:
            for j, execution in zip(batch, executions, strict=True):
                self.perform_job(j, queue, execution)
        finally:
            if self.liveness is not None:
                self.liveness.release()
        self.set_state(WorkerStatus.IDLE)

    def handle_job_failure(self, job: Any, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        final = not job.should_retry  # decided before RQ requeues a retry
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string, execution=execution)
        if final:
            last = (exc_string.strip().splitlines() or ["the job failed"])[-1]
            publish(self.connection, Outcome(job_id=job.id, status="failed", error=last[:500],
                                             error_type="generation_failed"), self.outcome_ttl)
