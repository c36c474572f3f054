"""Find jobs whose worker died and hand them back to RQ (retry, or fail when out of retries).

A non-forking worker that is killed leaves its jobs "started" until their registry entry
expires, and RQ only cleans up between jobs.  Easel workers keep their entries' expiry a few
seconds ahead with a heartbeat thread (`workers.heartbeat`), so an entry that expires means a
dead worker; `reap` then lets RQ's own cleanup retry the job (bounded by the job's `Retry`) or
fail it, and announces final failures to the waiting gateway.  Any process may call it.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from core.jobs import Outcome, publish_outcome

log = logging.getLogger("easel.reaper")
HEARTBEAT_SECONDS = 3  # how often a live worker pushes its jobs' expiry forward
EXPIRY_SECONDS = 15  # a started job whose worker was silent this long is abandoned


def announce_failure(redis: Any, job_id: str, message: str, ttl: int = 3600) -> None:
    publish_outcome(redis, Outcome(job_id=job_id, status="failed", error=message,
                                   error_type="worker_lost"), ttl)


def reap(redis: Any, queue_names: list[str]) -> int:
    """Clean every queue's started registry; returns how many abandoned jobs were seen."""
    seen = 0

    def on_abandoned(job: Any, *exc_info: Any) -> bool:
        nonlocal seen
        seen += 1
        if job.retries_left and job.retries_left > 0:
            log.warning("job %s lost its worker; re-running it (%d retries left)", job.id,
                        job.retries_left)
        else:
            log.error("job %s lost its worker and has no retries left; failing it", job.id)
            announce_failure(redis, job.id, "The worker rendering this job died, and so did "
                             "every retry; the job has failed.")
        return False  # let RQ's cleanup carry on with its own handling

    for name in queue_names:
        queue = Queue(name, connection=redis, serializer=JSONSerializer)
        registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer)
        registry.cleanup(exception_handlers=[on_abandoned])
    return seen
