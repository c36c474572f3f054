"""Refuse to run on a Redis that may silently drop jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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


def wait_for_redis(redis: Any, stop: Callable[[], bool] = lambda: False,
                   sleep: Callable[[float], None] = time.sleep) -> bool:
    """Block until Redis answers (backing off to 5 s between tries); False if `stop()` says so
    first.  A process started while Redis restarts waits for it instead of exiting, so its
    supervisor does not have to catch the outage by restarting it in a loop."""
    delay, said = 0.25, False
    while not stop():
        try:
            redis.ping()
            if said:
                log.warning("Redis is reachable again")
            return True
        except RedisError as exc:
            if not said:
                log.warning("Redis is not reachable (%s); waiting for it", exc)
                said = True
            sleep(delay)
            delay = min(delay * 2, 5.0)
    return False
