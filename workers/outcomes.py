"""Announce a job's outcome: write it under its key, then publish the job id to the gateway."""

from __future__ import annotations

from typing import Any

from core.jobs import DONE_CHANNEL, Outcome, outcome_key


def publish(redis: Any, outcome: Outcome, ttl: int) -> None:
    with redis.pipeline() as pipe:  # MULTI: the key exists before anyone hears about it
        pipe.set(outcome_key(outcome.job_id), outcome.model_dump_json(), ex=ttl)
        pipe.publish(DONE_CHANNEL, outcome.job_id)
        pipe.execute()
