"""A non-forking RQ worker that also announces final failures to the waiting gateway.

RQ's default worker forks a work horse per job, which would throw away a loaded pipeline each
time; `SimpleWorker` runs jobs in this process, where the pipelines stay resident.
"""

from __future__ import annotations

from typing import Any

from rq import SimpleWorker

from core.jobs import Outcome
from workers.outcomes import publish


class EaselWorker(SimpleWorker):
    outcome_ttl = 3600

    def handle_job_failure(self, job: Any, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        final = not job.should_retry  # decided before RQ requeues a retry
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string, execution=execution)
        if final:
            last = (exc_string.strip().splitlines() or ["the job failed"])[-1]
            publish(self.connection, Outcome(job_id=job.id, status="failed", error=last[:500],
                                             error_type="generation_failed"), self.outcome_ttl)
