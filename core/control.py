"""Admin commands to one worker, over Redis: load or unload a pipeline, reload the catalog.

The gateway pushes a command on the worker's control list; the worker's control thread
(workers/control.py) runs it and pushes the reply on the command's own reply list, which expires.
Workers stay non-forking and keep rendering meanwhile: a load runs beside the main thread.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, Field

REPLY_TTL_SECONDS = 120


def control_key(worker: str) -> str:
    return f"easel:control:{worker}"


def reply_key(command_id: str) -> str:
    return f"easel:control:reply:{command_id}"


def idle_queue(worker: str) -> str:
    """The queue a worker serving no pipeline listens on (RQ needs one); nothing is put on it."""
    return f"easel:idle:{worker}"


class Command(BaseModel):
    id: str = Field(default_factory=lambda: secrets.token_hex(8))
    op: Literal["load", "unload", "reload"]
    pipeline: str | None = None


class Reply(BaseModel):
    ok: bool
    error: str | None = None
    pipelines: dict[str, Any] = {}  # the worker's pipelines after the command (describe())


def send(redis: Any, worker: str, command: Command, timeout: float) -> Reply | None:
    """Push `command` to `worker` and wait for its reply; None when none came in time."""
    redis.rpush(control_key(worker), command.model_dump_json())
    redis.expire(control_key(worker), REPLY_TTL_SECONDS)  # a dead worker's list goes away
    got = redis.blpop([reply_key(command.id)], timeout=max(1, int(timeout)))
    if got is None:
        return None
    return Reply.model_validate_json(got[1])


def answer(redis: Any, command: Command, reply: Reply) -> None:
    with redis.pipeline() as pipe:
        pipe.rpush(reply_key(command.id), reply.model_dump_json())
        pipe.expire(reply_key(command.id), REPLY_TTL_SECONDS)
        pipe.execute()
