"""Find jobs whose worker died and hand them back to RQ (retry, or fail when out of retries).

A non-forking worker that is killed leaves its jobs "started" until their registry entry
expires, and RQ only cleans up between jobs.  Easel workers keep their entries' expiry one
liveness TTL ahead with a heartbeat thread (`workers.heartbeat`), so an entry that expires means
a dead worker; `reap` then lets RQ's own cleanup retry the job (bounded by the job's `Retry`) or
fail it, and announces final failures to the waiting gateway.  Any process may call it.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from core.allowed_jobs import EaselJob
from core.jobs import Outcome, publish_outcome
from core.telemetry import count_job

log = logging.getLogger("easel.reaper")
REAPED_KEY = "easel:stats:reaped"  # counts abandoned jobs seen, for metrics and the chaos run
# Gateways and workers all reap: two concurrent passes could both retry one abandoned job and
# queue it twice, so a pass runs only under this lock (it expires should its holder die).
LOCK_KEY = "easel:reaper:lock"
LOCK_MS = 30_000
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def announce_failure(redis: Any, job_id: str, message: str, ttl: int) -> None:
    publish_outcome(redis, Outcome(job_id=job_id, status="failed", error=message,
                                   error_type="worker_lost"), ttl)


# RQ dequeues by moving a job id onto the queue's intermediate list; the worker then starts it
# within milliseconds.  A worker killed in between strands the job there (RQ's own clean-up
# fails such a job, minutes later): one still stranded after a liveness TTL goes back to the
# front of its queue, unless it was started meanwhile.
_REQUEUE_STRANDED = """
for _, entry in ipairs(redis.call('zrange', KEYS[3], 0, -1)) do
  if string.sub(entry, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then return 0 end
end
if redis.call('lrem', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('lpush', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def reap(redis: Any, queue_names: list[str], outcome_ttl: int,
         stranded_after: float = 10.0) -> int:
    """Clean every queue's started registry; returns how many abandoned jobs were seen
    (0 too when another process holds the pass)."""
    token = secrets.token_hex(8)
    if not redis.set(LOCK_KEY, token, nx=True, px=LOCK_MS):
        return 0
    try:
        return _reap(redis, queue_names, outcome_ttl) + sum(
            _requeue_stranded(redis, name, stranded_after) for name in queue_names)
    finally:
        redis.eval(_RELEASE, 1, LOCK_KEY, token)


def _reap(redis: Any, queue_names: list[str], outcome_ttl: int) -> int:
    seen = 0

    def on_abandoned(job: Any, *exc_info: Any) -> bool:
        nonlocal seen
        seen += 1
        # Its dead worker may have left the id on the intermediate list too: drop it, or the
        # stranded-job rescue below would queue the job a second time.
        redis.lrem(Queue(job.origin, connection=redis).intermediate_queue_key, 0, job.id)
        if job.retries_left and job.retries_left > 0:
            log.warning("job %s lost its worker %s; re-running it (%d retries left)", job.id,
                        job.worker_name, job.retries_left,
                        extra={"job_id": job.id, "worker": job.worker_name,
                               "reason": "worker_lost", "status": "retried"})
            count_job(redis, "retried", "worker_lost")
        else:
            log.error("job %s lost its worker %s and has no retries left; failing it", job.id,
                      job.worker_name, extra={"job_id": job.id, "worker": job.worker_name,
                                              "reason": "worker_lost", "status": "failed"})
            count_job(redis, "failed", "worker_lost")
            announce_failure(redis, job.id, "The worker rendering this job died, and so did "
                             "every retry; the job has failed.", outcome_ttl)
        return False  # let RQ's cleanup carry on with its own handling

    for name in queue_names:
        # EaselJob: an abandoned job's failure callback is whatever its hash names; never run it.
        queue = Queue(name, connection=redis, serializer=JSONSerializer, job_class=EaselJob)
        registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer, job_class=EaselJob)
        registry.cleanup(exception_handlers=[on_abandoned])
    if seen:
        redis.incrby(REAPED_KEY, seen)
    return seen


def _requeue_stranded(redis: Any, queue_name: str, after: float) -> int:
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    seen_key = f"easel:stranded:{queue_name}"  # job id -> when a reaper first saw it stranded
    stranded = [j.decode() for j in redis.lrange(queue.intermediate_queue_key, 0, -1)]
    first_seen = {k.decode(): float(v) for k, v in redis.hgetall(seen_key).items()}
    started_key = StartedJobRegistry(queue=queue, serializer=JSONSerializer).key
    now, moved = time.time(), 0
    for job_id in stranded:
        if job_id not in first_seen:
            redis.hset(seen_key, job_id, now)
        elif now - first_seen[job_id] >= after and redis.eval(
                _REQUEUE_STRANDED, 3, queue.intermediate_queue_key, queue.key, started_key,
                job_id):
            log.warning("job %s was dequeued by a worker that died before starting it; "
                        "queued again", job_id, extra={"job_id": job_id, "reason": "stranded",
                                                       "status": "retried"})
            count_job(redis, "retried", "stranded")
            moved += 1
    gone = [j for j in first_seen if j not in stranded or now - first_seen[j] >= after]
    if gone:
        redis.hdel(seen_key, *gone)
    if stranded:
        redis.expire(seen_key, 3600)
    return moved
