"""Background jobs in Redis: one hash per job, and the queues that gateways' runners claim from.

Layout (every key expires or is trimmed; nothing grows without bound):
  easel:bg:job:<id>         hash {status, record}: `record` is the JobRecord as JSON; the hash
                            expires `ttl` seconds after the job was submitted or finished
  easel:bg:pending:<prio>   zset id -> not-before (ms): jobs no runner holds, oldest first
  easel:bg:claimed          zset id -> lease end (ms): jobs a runner holds; a runner renews its
                            leases while it runs them, so an entry past its end means the runner
                            died, and `recover` hands the job back to `pending`
Status changes are compare-and-set on `status` (one Lua script), so a cancel and a runner that
finishes the same job at once cannot both win.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import bad_request

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
VARIATIONS = "/v1/images/variations"
ENDPOINTS = (GENERATIONS, EDITS, VARIATIONS)
PRIORITIES = ("live", "batch")
FINAL = ("completed", "failed", "cancelled")
DONE_CHANNEL = "easel:bg:done"  # pub/sub: the id of every background job that reached FINAL
CLAIMED = "easel:bg:claimed"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

_NOW = "local t = redis.call('time'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
# KEYS: pending zset, claimed zset; ARGV: lease ms -> the claimed id, or nil
_CLAIM = _NOW + """
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #ids == 0 then return false end
redis.call('zrem', KEYS[1], ids[1])
redis.call('zadd', KEYS[2], now + tonumber(ARGV[1]), ids[1])
return ids[1]
"""
# KEYS: claimed zset; ARGV: lease ms, ids -> pushes the leases still held one lease further
_RENEW = _NOW + """
for i = 2, #ARGV do
  if redis.call('zscore', KEYS[1], ARGV[i]) then
    redis.call('zadd', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
  end
end
return 0
"""
# KEYS: job hash; ARGV: allowed current statuses (space-separated), new status, record, ttl ms
_TRANSITION = """
local status = redis.call('hget', KEYS[1], 'status')
if not status then return 0 end
for s in string.gmatch(ARGV[1], '%S+') do
  if s == status then
    redis.call('hset', KEYS[1], 'status', ARGV[2], 'record', ARGV[3])
    redis.call('pexpire', KEYS[1], ARGV[4])
    return 1
  end
end
return 0
"""


def new_job_id() -> str:
    return f"imgjob_{secrets.token_hex(16)}"


def check_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise bad_request("A job id has 1-128 letters, digits, '_' or '-'.", "job_id",
                          "invalid_value")
    return job_id


@dataclass
class JobRecord:
    id: str
    owner: str | None  # the API key's name; None with auth off
    endpoint: str
    status: str  # queued | in_progress | completed | failed | cancelled
    priority: str = "live"
    batch_id: str | None = None
    created_at: int = 0
    finished_at: int | None = None
    status_code: int | None = None  # the HTTP status the synchronous call would have had
    body: dict[str, Any] | None = None  # ... and its JSON body (an error envelope on failure)
    # The request: a JSON body, or for multipart {"fields", "images", "mask"} with the uploaded
    # files' private storage keys (service.background.store_upload).
    request: dict[str, Any] = field(default_factory=dict)
    multipart: bool = False
    base_url: str = ""  # what `url` results are built on (the submit's public base)
    queued_ms: int = 0  # its place in the pending queue (first come, first served)

    @property
    def render_id(self) -> str:
        """The RQ job id: fixed per background job, so a re-claimed job finds its render; a
        one-way hash, so result URLs (which show it) never reveal the background job's id."""
        return hashlib.sha256(f"easel-background:{self.id}".encode()).hexdigest()[:32]

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobRecord:
        return cls(**json.loads(raw))


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class JobStore:
    """Persistence and claiming of background jobs (asyncio Redis)."""

    def __init__(self, redis: Any, ttl_seconds: int, lease_seconds: float) -> None:
        self.redis = redis
        self.ttl_ms = ttl_seconds * 1000
        self.lease_ms = max(100, int(lease_seconds * 1000))
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._transition = redis.register_script(_TRANSITION)

    @staticmethod
    def key(job_id: str) -> str:
        return f"easel:bg:job:{job_id}"

    @staticmethod
    def pending(priority: str) -> str:
        return f"easel:bg:pending:{priority}"

    async def create(self, record: JobRecord) -> JobRecord:
        """Store and queue a new job; a job with this id already stored is returned instead
        (a caller that retries its submit with the same id never queues it twice)."""
        key = self.key(record.id)
        record.queued_ms = record.queued_ms or int(time.time() * 1000)
        if not await self.redis.hsetnx(key, "status", record.status):
            existing = await self.load(record.id)
            if existing is not None:
                return existing
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": record.status, "record": record.to_json()})
            pipe.pexpire(key, self.ttl_ms)
            pipe.zadd(self.pending(record.priority), {record.id: record.queued_ms})
            await pipe.execute()
        return record

    async def load(self, job_id: str) -> JobRecord | None:
        raw = await self.redis.hget(self.key(job_id), "record")
        return JobRecord.from_json(raw) if raw else None

    async def transition(self, record: JobRecord, allowed: tuple[str, ...]) -> bool:
        """Write `record` if the stored status is one of `allowed` (compare-and-set)."""
        done = await self._transition(keys=[self.key(record.id)],
                                      args=[" ".join(allowed), record.status, record.to_json(),
                                            self.ttl_ms])
        return bool(done)

    async def claim(self, priority: str) -> str | None:
        job_id = await self._claim(keys=[self.pending(priority), CLAIMED], args=[self.lease_ms])
        return _text(job_id) if job_id else None

    async def renew(self, job_ids: list[str]) -> None:
        if job_ids:
            await self._renew(keys=[CLAIMED], args=[self.lease_ms, *job_ids])

    async def release(self, job_id: str) -> None:
        await self.redis.zrem(CLAIMED, job_id)

    async def unqueue(self, record: JobRecord) -> bool:
        """Take a job no runner holds off its pending queue (ZREM wins once)."""
        return bool(await self.redis.zrem(self.pending(record.priority), record.id))

    async def requeue(self, record: JobRecord, not_before_ms: int) -> None:
        """Hand a held job back to the pending queue (a refusal to retry, or a dead runner)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.pending(record.priority), {record.id: not_before_ms})
            pipe.zrem(CLAIMED, record.id)
            await pipe.execute()

    async def now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def recover(self, limit: int = 100) -> int:
        """Jobs whose runner stopped renewing go back to the front of their queue (their first
        submit time), unless they finished meanwhile.  Any gateway may run it."""
        now = await self.now_ms()
        moved = 0
        for raw in await self.redis.zrangebyscore(CLAIMED, "-inf", now, start=0, num=limit):
            job_id = _text(raw)
            if not await self.redis.zrem(CLAIMED, job_id):
                continue  # another gateway's recovery took it
            record = await self.load(job_id)
            if record is None or record.status in FINAL:
                continue
            await self.redis.zadd(self.pending(record.priority), {job_id: record.queued_ms})
            moved += 1
        return moved

    async def rank(self, record: JobRecord) -> int | None:
        """Jobs ahead of this one in its pending queue, or None when a runner holds it."""
        rank = await self.redis.zrank(self.pending(record.priority), record.id)
        return None if rank is None else int(rank)

    async def announce(self, job_id: str) -> None:
        await self.redis.publish(DONE_CHANNEL, job_id)
