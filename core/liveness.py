"""Which workers are alive, and which queues they serve: heartbeat keys with a short TTL.

RQ's own worker registry keeps a killed non-forking worker "alive" until its TTL (minutes)
runs out; readiness and routing need to know within seconds.  Every worker process start has a
name of its own (`process_name`), so a restarted worker never waits for its dead predecessor's
registrations to expire.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

WORKERS_SET = "easel:workers"


def process_name(base: str) -> str:
    """A name unique to this process start: supervisors (`easel up`, a container restart)
    bring a worker back with the same configured name, hostname and even pid, and RQ refuses a
    second registration under a name that is still marked active."""
    return f"{base}-{secrets.token_hex(3)}"


def _key(name: str) -> str:
    return f"easel:alive:{name}"


def beat(redis: Any, name: str, queues: list[str], ttl_seconds: float,
         extra: dict[str, Any] | None = None) -> None:
    with redis.pipeline() as pipe:
        pipe.sadd(WORKERS_SET, name)
        pipe.set(_key(name), json.dumps({"queues": queues, **(extra or {})}),
                 px=max(1, int(ttl_seconds * 1000)))
        pipe.execute()


def forget(redis: Any, name: str) -> None:
    with redis.pipeline() as pipe:
        pipe.srem(WORKERS_SET, name)
        pipe.delete(_key(name))
        pipe.execute()


def live_workers(redis: Any) -> dict[str, dict[str, Any]]:
    """name -> heartbeat payload, for every worker whose last beat has not expired."""
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


@dataclass(frozen=True)
class Fleet:
    """One read of the heartbeats (`live_workers`), asked every question a caller has, so that
    readiness and the model list see one moment and cost one round of Redis reads."""

    alive: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, redis: Any) -> Fleet:
        return cls(live_workers(redis))

    def counts(self, queues: list[str]) -> dict[str, int]:
        """Live workers per queue."""
        return {q: sum(q in info.get("queues", []) for info in self.alive.values())
                for q in queues}

    def load_failures(self) -> dict[str, str]:
        """Pipelines some live worker failed to load -> the message it gave."""
        failed: dict[str, str] = {}
        for info in self.alive.values():
            failed.update(info.get("failed") or {})
        return failed

    def adapter_failures(self) -> dict[str, dict[str, str]]:
        """Pipeline -> adapter -> why it failed to load on some live worker that holds the
        pipeline (readiness lists them; the pipeline and its other adapters still serve)."""
        failed: dict[str, dict[str, str]] = {}
        for info in self.alive.values():
            for pipeline, state in (info.get("pipelines") or {}).items():
                failed.setdefault(pipeline, {}).update(state.get("failed_adapters") or {})
        return {p: dict(sorted(a.items())) for p, a in sorted(failed.items()) if a}

    def serving(self, queue: str, pipeline: str) -> tuple[int, dict[str, str]]:
        """Live workers serving `queue`, and the adapters of `pipeline` that failed to load on
        every one of them -> why (no worker can apply those: the gateway refuses requests
        naming them).  A worker whose pipeline is asleep reports no adapters, so it leaves
        every adapter open."""
        workers = [info for info in self.alive.values() if queue in info.get("queues", [])]
        unusable: dict[str, str] | None = None
        for info in workers:
            failed = ((info.get("pipelines") or {}).get(pipeline) or {}).get(
                "failed_adapters") or {}
            unusable = dict(failed) if unusable is None else {
                name: why for name, why in unusable.items() if name in failed}
        return len(workers), unusable or {}

    def unloaded(self) -> dict[str, str]:
        """Pipelines unloaded through the admin API that no live worker holds or serves now ->
        what to do about it (readiness, /v1/models and the API's 503 say so)."""
        held: set[str] = set()
        dropped: set[str] = set()
        for info in self.alive.values():
            dropped.update(info.get("unloaded") or [])
            held.update(name for name, state in (info.get("pipelines") or {}).items()
                        if state.get("state") in ("resident", "asleep"))
        return {p: f"pipeline {p} was unloaded through the admin API (POST /v1/admin/"
                   f"pipelines/{p}/load brings it back)" for p in sorted(dropped - held)}


def live_counts(redis: Any, queues: list[str]) -> dict[str, int]:
    return Fleet.read(redis).counts(queues)


def live_count(redis: Any, queue: str) -> int:
    return live_counts(redis, [queue])[queue]
