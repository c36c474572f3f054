"""Refuse to run on a Redis that may silently drop jobs."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("easel")


class UnsafeRedis(RuntimeError):
    pass


def check_redis_policy(redis: Any) -> None:
    """An evicting `maxmemory-policy` would delete queued jobs under memory pressure."""
    try:
        policy = redis.config_get("maxmemory-policy").get("maxmemory-policy", "noeviction")
    except ResponseError:  # managed Redis often disables CONFIG: trust, but say so
        log.warning("cannot read maxmemory-policy; make sure it is 'noeviction'")
        return
    except RedisError as exc:
        log.warning("Redis is not reachable yet (%s); the policy check is skipped", exc)
        return
    if policy != "noeviction":
        raise UnsafeRedis(f"Redis maxmemory-policy is {policy!r}: queued jobs could be evicted. "
                          "Set it to 'noeviction' (Easel refuses to run otherwise).")
