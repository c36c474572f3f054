"""Which workers are alive, and which queues they serve: heartbeat keys with a short TTL.

RQ's own worker registry keeps a killed non-forking worker "alive" until its TTL (minutes)
runs out; readiness and routing need to know within seconds.
"""

from __future__ import annotations

import json
from typing import Any

WORKERS_SET = "easel:workers"
ALIVE_SECONDS = 15


def _key(name: str) -> str:
    return f"easel:alive:{name}"


def beat(redis: Any, name: str, queues: list[str], extra: dict[str, Any] | None = None) -> None:
    with redis.pipeline() as pipe:
        pipe.sadd(WORKERS_SET, name)
        pipe.set(_key(name), json.dumps({"queues": queues, **(extra or {})}), ex=ALIVE_SECONDS)
        pipe.execute()


def forget(redis: Any, name: str) -> None:
    with redis.pipeline() as pipe:
        pipe.srem(WORKERS_SET, name)
        pipe.delete(_key(name))
        pipe.execute()


def live_workers(redis: Any) -> dict[str, dict[str, Any]]:
    """name -> heartbeat payload, for every worker that beat within ALIVE_SECONDS."""
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in redis.smembers(WORKERS_SET))
    if not names:
        return {}
    values = redis.mget([_key(n) for n in names])
    alive, dead = {}, []
    for name, raw in zip(names, values, strict=True):
        if raw is None:
            dead.append(name)
        else:
            alive[name] = json.loads(raw)
    if dead:
        redis.srem(WORKERS_SET, *dead)
    return alive


def live_counts(redis: Any, queues: list[str]) -> dict[str, int]:
    """Live workers per queue, from one read of the heartbeats."""
    alive = live_workers(redis).values()
    return {q: sum(q in info.get("queues", []) for info in alive) for q in queues}


def live_count(redis: Any, queue: str) -> int:
    return live_counts(redis, [queue])[queue]
