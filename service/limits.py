"""Overload protection: a queue-depth cap per pipeline and per-key rate and concurrency quotas.

All counters live in Redis so that several gateways behind a load balancer share them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

from core.errors import OpenAIError


def rate_limited(message: str, retry_after: float, code: str) -> OpenAIError:
    seconds = max(1, min(120, math.ceil(retry_after)))
    return OpenAIError(429, message, "rate_limit_exceeded", None, code,
                       {"Retry-After": str(seconds)})


class ServiceRate:
    """Completed jobs per second over the last minute, per pipeline, as this gateway saw them."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._done: dict[str, deque[float]] = {}

    def record(self, pipeline: str) -> None:
        q = self._done.setdefault(pipeline, deque())
        q.append(time.monotonic())
        cutoff = q[-1] - self.window
        while q[0] < cutoff:  # bounded memory: only the last window is kept
            q.popleft()

    def per_second(self, pipeline: str) -> float:
        q = self._done.get(pipeline)
        if not q:
            return 0.0
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        span = max(1.0, min(self.window, time.monotonic() - q[0])) if q else self.window
        return len(q) / span

    def retry_after(self, pipeline: str, depth: int) -> float:
        """How long the queue ahead takes to drain at the measured rate (5 s when unknown)."""
        rate = self.per_second(pipeline)
        return depth / rate if rate > 0 else 5.0


class KeyQuota:
    """Requests per minute and jobs in flight per API key (fixed windows in Redis)."""

    def __init__(self, redis: Any, per_minute: int, max_concurrent: int) -> None:
        self.redis = redis
        self.per_minute = per_minute
        self.max_concurrent = max_concurrent

    async def acquire(self, key_name: str) -> None:
        window = int(time.time() // 60)
        rate_key = f"easel:rate:{key_name}:{window}"
        active_key = f"easel:active:{key_name}"
        pipe = self.redis.pipeline()
        pipe.incr(rate_key)
        pipe.expire(rate_key, 120)
        pipe.incr(active_key)
        pipe.expire(active_key, 3600)  # a crashed gateway's counts fade instead of sticking
        count, _, active, _ = await pipe.execute()
        if self.per_minute and count > self.per_minute:
            await self.redis.decr(active_key)
            raise rate_limited(f"Rate limit reached for key '{key_name}': {self.per_minute} "
                               "requests per minute.", 60 - time.time() % 60, "rate_limit_exceeded")
        if self.max_concurrent and active > self.max_concurrent:
            await self.redis.decr(active_key)
            raise rate_limited(f"Too many concurrent requests for key '{key_name}' (at most "
                               f"{self.max_concurrent}).", 2, "concurrency_limit_exceeded")

    async def release(self, key_name: str) -> None:
        await self.redis.decr(f"easel:active:{key_name}")
