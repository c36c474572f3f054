"""What the gateway and the workers report alike: histogram buckets, the build, and the cluster
counters kept in Redis (job retries and failures by reason, worker starts), which every process
writes and the gateway exports, so one scrape of any gateway shows the whole cluster.
"""

from __future__ import annotations

import logging
import platform
import time
from importlib import metadata
from typing import Any

log = logging.getLogger("easel.telemetry")

# Seconds, for everything from a 10 ms request to a 10-minute job (EASEL_JOB_TIMEOUT_SECONDS is
# 600 by default): at most 1.5x between neighbours from one second up, so a quantile read from
# the buckets is never far above the slowest real observation.
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15,
                   20, 25, 30, 40, 50, 60, 75, 90, 105, 120, 150, 180, 240, 300, 420, 600, 900)

JOBS_KEY = "easel:stats:jobs"  # hash: "<retried|failed>:<reason>" -> jobs, all processes
STARTS_KEY = "easel:stats:worker_starts"  # hash: worker name (no per-start suffix) -> starts
STARTED_AT_KEY = "easel:stats:worker_started_at"  # zset: worker name -> last start (pruning)
STARTS_KEPT_SECONDS = 7 * 86400  # a name not started for a week is forgotten (bounded hash)
# Why a job attempt failed; `worker_lost` and `stranded` come from the reaper (core.reaping).
REASONS = ("error", "timeout", "storage", "out_of_memory", "refused", "worker_lost", "stranded")


def version() -> str:
    try:
        return metadata.version("easel")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels(component: str) -> dict[str, str]:
    return {"version": version(), "component": component,
            "python": platform.python_version()}


def failure_reason(exc_type: type[BaseException] | None, message: str = "") -> str:
    """A job failure's reason label: a handful of values, never the exception's text."""
    names = {c.__name__ for c in (exc_type.__mro__ if exc_type else ())}
    if "JobTimeoutException" in names:
        return "timeout"
    if "StorageError" in names:
        return "storage"
    if "OutOfMemoryError" in names or "out of memory" in message.lower():
        return "out_of_memory"
    if "JobRefused" in names:
        return "refused"
    return "error"


def count_job(redis: Any, outcome: str, reason: str, by: int = 1) -> None:
    """Count a job attempt that will be re-run (`retried`) or failed for good (`failed`).
    Best effort: a Redis hiccup must not fail the job a second time."""
    try:
        redis.hincrby(JOBS_KEY, f"{outcome}:{reason}", by)
    except Exception as exc:
        log.debug("could not count a %s job: %s", outcome, exc)


def record_start(redis: Any, name: str) -> None:
    """A worker process starts: counted under its configured name, which a supervisor or a
    container restart keeps, so a crash loop shows as one name's starts climbing."""
    now = time.time()
    try:
        with redis.pipeline() as pipe:
            pipe.hincrby(STARTS_KEY, name, 1)
            pipe.zadd(STARTED_AT_KEY, {name: now})
            pipe.zrangebyscore(STARTED_AT_KEY, 0, now - STARTS_KEPT_SECONDS)
            old = pipe.execute()[2]
        if old:
            with redis.pipeline() as pipe:
                pipe.hdel(STARTS_KEY, *old)
                pipe.zrem(STARTED_AT_KEY, *old)
                pipe.execute()
    except Exception as exc:  # Redis away: the worker will fail to connect and say so itself
        log.warning("could not record this worker's start: %s", exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_counters(redis: Any, reaped_key: str) -> tuple[dict[str, dict[str, int]],
                                                       dict[str, int], int]:
    """({"retried": {reason: n}, "failed": {...}}, {worker: starts}, reaped) in one round trip;
    every known reason is present, 0 when nothing happened."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(JOBS_KEY)
        pipe.hgetall(STARTS_KEY)
        pipe.get(reaped_key)
        jobs, starts, reaped = pipe.execute()
    counts: dict[str, dict[str, int]] = {"retried": dict.fromkeys(REASONS, 0),
                                         "failed": dict.fromkeys(REASONS, 0)}
    for field, value in jobs.items():
        outcome, _, reason = _text(field).partition(":")
        if outcome in counts and reason:
            counts[outcome][reason] = int(value)
    return counts, {_text(k): int(v) for k, v in starts.items()}, int(reaped or 0)
