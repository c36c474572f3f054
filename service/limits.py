"""Overload protection: a queue-depth cap per pipeline and per-key rate and concurrency quotas.

All counters live in Redis so that several gateways behind a load balancer share them, and each
decision is one Lua script, so it is atomic across gateways.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from core.errors import OpenAIError

log = logging.getLogger("easel.gateway")


def rate_limited(message: str, retry_after: float, code: str) -> OpenAIError:
    seconds = max(1, min(120, math.ceil(retry_after)))
    return OpenAIError(429, message, "rate_limit_exceeded", None, code,
                       {"Retry-After": str(seconds)})


class ServiceRate:
    """Completed jobs per second over the last minute, per pipeline: this gateway's count,
    times `share` when it is one of that many processes sharing a port (each sees its part)."""

    def __init__(self, window: float = 60.0, share: int = 1) -> None:
        self.window = window
        self.share = share
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
        return len(q) * self.share / span

    def retry_after(self, pipeline: str, depth: int) -> float:
        """How long the queue ahead takes to drain at the measured rate (5 s when unknown)."""
        rate = self.per_second(pipeline)
        return depth / rate if rate > 0 else 5.0


# One round trip decides a whole admission, so concurrent requests cannot all pass a check
# that each of them alone would fail.  Order: the key's rate (every attempt counts), the key's
# concurrency, then the queue.  A refusal writes nothing but the rate count, so a client that
# retries never extends a lock-out; an admission adds two leases that expire on their own.
#   KEYS: queue list (RQ), queue reservations (zset), key leases (zset), key rate counter
#   ARGV: lease ms, lease id, queue cap, key max concurrent, key per minute, then optionally
#         the job's enqueue commands (service.queue.JobQueue.enqueue_commands)
#   -> {status, n}: 0 admitted, 1 rate limited, 2 too many concurrent, 3 queue full
# Time is Redis's own, so gateways with skewed clocks agree on when a lease ends.
_NOW = "local t = redis.call('time'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
_ADMIT = _NOW + """
local lease, id = tonumber(ARGV[1]), ARGV[2]
local cap, concurrent, per_minute = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if per_minute > 0 then
  local count = redis.call('incr', KEYS[4])
  if count == 1 then redis.call('pexpire', KEYS[4], 120000) end
  if count > per_minute then return {1, count} end
end
redis.call('zremrangebyscore', KEYS[3], '-inf', now)
local active = redis.call('zcard', KEYS[3])
if concurrent > 0 and active >= concurrent then return {2, active} end
redis.call('zremrangebyscore', KEYS[2], '-inf', now)
local depth = redis.call('llen', KEYS[1]) + redis.call('zcard', KEYS[2])
if depth >= cap then return {3, depth} end
if #ARGV > 5 then
  -- Admitted with its enqueue: RQ's own commands (argument count, then the arguments), run
  -- here so the job is in the queue list at once and needs no reservation.
  local i = 6
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
else
  redis.call('zadd', KEYS[2], now + lease, id)
  redis.call('pexpire', KEYS[2], lease)
end
if concurrent > 0 then
  redis.call('zadd', KEYS[3], now + lease, id)
  redis.call('pexpire', KEYS[3], lease)
end
return {0, depth}
"""
# Push the leases of requests still waiting one lease further (only those still held).
#   KEYS: lease zsets; ARGV: the lease length in ms, then one lease id per key
_RENEW = _NOW + """
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('zscore', key, ARGV[i + 1]) then
    redis.call('zadd', key, now + lease, ARGV[i + 1])
    redis.call('pexpire', key, lease)
  end
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """One admitted request: its id in the queue's reservations and in its key's leases."""

    id: str
    queue_key: str
    key_leases: str | None  # the key's lease zset, when its concurrency is capped
    reserved: bool = True  # a queue reservation is held (False: enqueued by the admission)


class Admission:
    """Queue-depth cap per pipeline and per-key rate and concurrency, decided atomically in
    Redis.  A request's concurrency slot is a lease this gateway renews while the request
    waits: a gateway that dies stops renewing, and its slots free themselves within a lease."""

    def __init__(self, redis: Any, max_queue_depth: int, per_minute: int, max_concurrent: int,
                 lease_seconds: float) -> None:
        self.redis = redis
        self.max_queue_depth = max_queue_depth
        self.per_minute = per_minute
        self.max_concurrent = max_concurrent
        self.lease_ms = max(1000, int(lease_seconds * 1000))
        self._held: dict[str, Lease] = {}
        self._admit = redis.register_script(_ADMIT)
        self._renew = redis.register_script(_RENEW)

    @staticmethod
    def _reservations(queue_key: str) -> str:
        return f"easel:admitting:{queue_key}"

    @staticmethod
    def _leases(key_name: str | None) -> str:
        return f"easel:leases:{key_name or '-'}"

    @staticmethod
    def _rate_key(key_name: str | None) -> str:
        return f"easel:rate:{key_name or '-'}:{int(time.time() // 60)}"

    async def acquire(self, queue_key: str, key_name: str | None, lease_id: str,
                      model: str, retry_after: Callable[[int], float],
                      count_rate: bool = True,
                      enqueue: list[tuple[Any, ...]] | None = None) -> Lease:
        """`count_rate=False`: a background job whose submit was already counted (charge).
        `enqueue`: the job's enqueue commands, run in the same round trip once admitted (then
        no reservation is taken, and `enqueued` is not needed)."""
        keyed = key_name is not None
        flat: list[Any] = []
        for command in enqueue or ():
            flat += [len(command), *command]
        status, n = await self._admit(
            keys=[queue_key, self._reservations(queue_key), self._leases(key_name),
                  self._rate_key(key_name)],
            args=[self.lease_ms, lease_id, self.max_queue_depth,
                  self.max_concurrent if keyed else 0,
                  self.per_minute if keyed and count_rate else 0, *flat])
        if status == 1:
            raise rate_limited(f"Rate limit reached for key '{key_name}': {self.per_minute} "
                               "requests per minute.", 60 - time.time() % 60, "rate_limit_exceeded")
        if status == 2:
            raise rate_limited(f"Too many concurrent requests for key '{key_name}' (at most "
                               f"{self.max_concurrent}).", 2, "concurrency_limit_exceeded")
        if status == 3:
            raise rate_limited(f"The queue for model '{model}' is full ({n} jobs); try again "
                               "later.", retry_after(int(n)), "queue_full")
        capped = keyed and self.max_concurrent > 0
        lease = Lease(lease_id, queue_key, self._leases(key_name) if capped else None,
                      reserved=not enqueue)
        if capped:
            self._held[lease_id] = lease
        return lease

    async def charge(self, key_name: str | None) -> None:
        """Count one request against the key's per-minute rate without taking a queue slot: a
        background submit (`Prefer: respond-async`) pays here, its job is admitted later."""
        if key_name is None or self.per_minute <= 0:
            return
        key = self._rate_key(key_name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120, nx=True)
            count, _ = await pipe.execute()
        if int(count) > self.per_minute:
            raise rate_limited(f"Rate limit reached for key '{key_name}': {self.per_minute} "
                               "requests per minute.", 60 - time.time() % 60, "rate_limit_exceeded")

    async def enqueued(self, lease: Lease) -> None:
        """The job is in the queue list now: its reservation is no longer needed."""
        await self.redis.zrem(self._reservations(lease.queue_key), lease.id)

    async def release(self, lease: Lease) -> None:
        self._held.pop(lease.id, None)
        if not lease.reserved and not lease.key_leases:
            return  # nothing held in Redis: no round trip
        async with self.redis.pipeline(transaction=False) as pipe:
            if lease.reserved:
                pipe.zrem(self._reservations(lease.queue_key), lease.id)
            if lease.key_leases:
                pipe.zrem(lease.key_leases, lease.id)
            await pipe.execute()

    async def renew(self) -> None:
        leases = list(self._held.values())
        if not leases:
            return
        keys = [lease.key_leases for lease in leases if lease.key_leases]
        await self._renew(keys=keys, args=[self.lease_ms, *[lease.id for lease in leases
                                                             if lease.key_leases]])

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:  # Redis away: leases renew on the next pass
                log.debug("lease renewal failed: %s", exc)
