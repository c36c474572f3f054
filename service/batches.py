"""The Batch API's records in Redis: OpenAI's batch object, its status changes, and each line's
answer, written once.

Keys: `easel:batch:<id>` the batch (a hash: one field per attribute, so the cancel route and the
driver never overwrite each other's fields), `easel:batch:<id>:done` / `:failed` the output and
error lines by custom_id (HSETNX: a line is written once, whatever runs it again), `:inflight`
the line indices handed to the runner and not yet answered, `:next` how many runnable lines have
been handed over; `easel:batches:<owner>` the owner's batches by creation time;
`easel:batches:active` the batches a driver must work on.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from redis.asyncio import Redis

from core.errors import OpenAIError

ACTIVE = "easel:batches:active"
FINAL = ("completed", "failed", "cancelled", "expired")
TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
         "cancelling_at", "cancelled_at")
# Compare-and-set of the status: the fields are written only when the status is one of ARGV[1]
# (comma-separated), so a cancel and the driver's progress never undo each other.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == status then
    redis.call('HSET', KEYS[1], unpack(ARGV, 2))
    return 1
  end
end
return 0
"""


def batch_key(batch_id: str, part: str = "") -> str:
    return f"easel:batch:{batch_id}{':' + part if part else ''}"


def owner_key(owner: str) -> str:
    return f"easel:batches:{owner}"


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


def no_such_batch(batch_id: str) -> OpenAIError:
    return OpenAIError(404, f"No batch found with id '{batch_id[:80]}'.",
                       "invalid_request_error", "batch_id", "not_found")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BatchStore:
    def __init__(self, redis: Redis, keep_seconds: int) -> None:
        self.redis = redis
        self.keep_seconds = keep_seconds  # how long a finished batch stays listed
        self._transition = redis.register_script(_TRANSITION)

    async def create(self, owner: str, endpoint: str, input_file_id: str,
                     metadata: dict[str, str] | None, window: int,
                     output_expires: int | None, base_url: str) -> str:
        batch_id, now = new_batch_id(), int(time.time())
        fields = {"id": batch_id, "owner": owner, "endpoint": endpoint,
                  "input_file_id": input_file_id, "completion_window": "24h",
                  "status": "validating", "created_at": now, "expires_at": now + window,
                  "metadata": json.dumps(metadata), "total": 0,
                  "output_expires": output_expires or 0,
                  "base_url": base_url}  # what results' `url`s are built on
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(batch_key(batch_id), mapping=fields)  # type: ignore[arg-type]
            pipe.zadd(owner_key(owner), {batch_id: time.time()})  # finer than created_at
            pipe.sadd(ACTIVE, batch_id)
            await pipe.execute()
        return batch_id

    async def fields(self, batch_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(batch_key(batch_id)) if len(batch_id) <= 80 else {}
        return {_text(k): _text(v) for k, v in raw.items()} or None

    async def owned(self, owner: str, batch_id: str) -> dict[str, str]:
        """The owner's batch, or 404: another key's batch is as unknown as a made-up id."""
        fields = await self.fields(batch_id)
        if fields is None or fields["owner"] != owner:
            raise no_such_batch(batch_id)
        return fields

    async def move(self, batch_id: str, allowed: tuple[str, ...], status: str,
                   **extra: Any) -> bool:
        """Set the status (and its timestamp, and `extra`) if it is now one of `allowed`."""
        fields: dict[str, Any] = {"status": status, **extra}
        if f"{status}_at" in TIMES:
            fields[f"{status}_at"] = int(time.time())
        args = [x for pair in fields.items() for x in (pair[0], str(pair[1]))]
        moved = bool(await self._transition(keys=[batch_key(batch_id)],
                                            args=[",".join(allowed), *args]))
        if moved and status in FINAL:
            await self._retire(batch_id)
        return moved

    async def _retire(self, batch_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(ACTIVE, batch_id)
            for part in ("", "done", "failed"):
                pipe.expire(batch_key(batch_id, part), self.keep_seconds)
            pipe.delete(batch_key(batch_id, "inflight"), batch_key(batch_id, "next"))
            await pipe.execute()

    async def record(self, batch_id: str, ok: bool, key: str, index: int,
                     line: dict[str, Any]) -> None:
        """A line's answer, kept only if it is the first for `key` (its custom_id)."""
        entry = json.dumps({"index": index, "line": line}, separators=(",", ":"))
        await self.redis.hsetnx(batch_key(batch_id, "done" if ok else "failed"), key, entry)

    async def answers(self, batch_id: str, ok: bool) -> list[tuple[int, dict[str, Any]]]:
        raw = await self.redis.hvals(batch_key(batch_id, "done" if ok else "failed"))
        entries = [json.loads(v) for v in raw]
        return [(e["index"], e["line"]) for e in entries]

    async def counts(self, batch_id: str) -> tuple[int, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hlen(batch_key(batch_id, "done"))
            pipe.hlen(batch_key(batch_id, "failed"))
            done, failed = await pipe.execute()
        return int(done), int(failed)

    async def public(self, fields: dict[str, str]) -> dict[str, Any]:
        """OpenAI's batch object."""
        done, failed = await self.counts(fields["id"])
        errors = json.loads(fields["errors"]) if fields.get("errors") else None
        obj: dict[str, Any] = {
            "id": fields["id"], "object": "batch", "endpoint": fields["endpoint"],
            "errors": {"object": "list", "data": errors} if errors else None,
            "input_file_id": fields["input_file_id"], "completion_window": "24h",
            "status": fields["status"], "output_file_id": fields.get("output_file_id") or None,
            "error_file_id": fields.get("error_file_id") or None,
            "created_at": int(fields["created_at"]), "expires_at": int(fields["expires_at"]),
            "request_counts": {"total": int(fields["total"]), "completed": done,
                               "failed": failed},
            "metadata": json.loads(fields["metadata"])}
        for name in TIMES:
            obj[name] = int(fields[name]) if fields.get(name) else None
        return obj

    async def page(self, owner: str, after: str | None, limit: int) -> tuple[list[dict[str, str]],
                                                                            bool]:
        """The owner's batches, newest first, after the batch `after`; and whether more follow."""
        ids = [_text(i) for i in await self.redis.zrange(owner_key(owner), 0, -1, desc=True)]
        if after is not None:
            ids = ids[ids.index(after) + 1:] if after in ids else []
        found: list[dict[str, str]] = []
        for batch_id in ids:
            fields = await self.fields(batch_id)
            if fields is None:  # expired: forget it
                await self.redis.zrem(owner_key(owner), batch_id)
                continue
            if len(found) == limit:
                return found, True
            found.append(fields)
        return found, False
