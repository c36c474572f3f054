"""A dequeue that takes a worker's queues strictly in order, crash-safely.

Workers serve each pipeline's live queue and, after all of them, its batch queue
(core.jobs.batch_queue).  RQ takes several queues in order with LPOP, which takes the job off
every list at once: a worker killed before it starts the job loses it for good.  With one queue
RQ uses LMOVE onto the queue's intermediate list instead, which the reaper rescues from
(core.reaping).  This dequeue does that for every queue: a non-blocking LMOVE on each queue in
order, then a short blocking BLMOVE on the first one (Redis can block on one list only), then a
new pass, so a live job is never behind a batch job and never lost in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rq import Queue

from core.jobs import is_batch_queue

# How long an idle worker blocks on its first queue before looking at the others again: the
# most a job on another queue waits for an idle worker (only the first queue wakes it at once).
BLOCK_ONE_LIVE = 1.0  # the other queues are batch queues: a second is nothing to them
BLOCK_SEVERAL = 0.2  # several live queues (a worker serving several pipelines)


class PriorityQueue(Queue):
    @classmethod
    def dequeue_any(cls, queues: Iterable[Queue], timeout: int | None, connection: Any,
                    job_class: Any = None, serializer: Any = None,
                    death_penalty_class: Any = None) -> tuple[Any, Queue] | None:
        queues = list(queues)
        live = [q for q in queues if not is_batch_queue(q.name)]
        block = BLOCK_ONE_LIVE if len(live) <= 1 else BLOCK_SEVERAL
        while True:
            result = None
            for queue in queues:
                result = cls.lmove(connection, queue.key, None)
                if result is not None:
                    break
            if result is None:
                if timeout is None:
                    return None
                # rq.exceptions.DequeueTimeout when nothing came: RQ's loop beats, asks again.
                result = cls.lmove(connection, queues[0].key,
                                   min(float(timeout), block))  # type: ignore[arg-type]
            queue_key, job_id = result
            fetched = cls._fetch_dequeued_job(
                connection, queue_key, job_id.decode() if isinstance(job_id, bytes) else job_id,
                job_class=job_class, serializer=serializer,
                death_penalty_class=death_penalty_class)
            if fetched is not None:
                return fetched

