"""The Files API's store: each file's bytes in Easel's storage under a private key, its
metadata in Redis, and per-key ownership (a key sees only its own files; with auth off there is
one owner, "").

Redis layout: `easel:file:<id>` the file object (JSON, with its owner and storage key),
`easel:files:<owner>` a sorted set of the owner's file ids by creation time (listing), and
`easel:files:expiry` every file id by its expiry time (the purge).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from redis.asyncio import Redis
from starlette.concurrency import run_in_threadpool

from core.errors import OpenAIError, storage_unavailable
from core.jobs import new_job_id, stored_file_key
from core.storage import LocalStorage, S3Storage, StorageError

EXPIRY_SET = "easel:files:expiry"
log = logging.getLogger("easel.files")
CONTENT_TYPES = {"batch": "application/jsonl", "batch_output": "application/jsonl"}


def _meta_key(file_id: str) -> str:
    return f"easel:file:{file_id}"


def _owner_key(owner: str) -> str:
    return f"easel:files:{owner}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def no_such_file(file_id: str, param: str | None = None) -> OpenAIError:
    """The same answer for a file that never existed and another key's file: nothing leaks."""
    if param is not None:
        return OpenAIError(400, f"No such File object: {file_id[:80]}", "invalid_request_error",
                           param, "file_not_found")
    return OpenAIError(404, f"No such File object: {file_id[:80]}", "invalid_request_error",
                       "id", "not_found")


@dataclass
class StoredFile:
    id: str
    owner: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    key: str  # where the bytes are in storage: never shown to clients

    def public(self) -> dict[str, Any]:
        """OpenAI's file object."""
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


class FileStore:
    def __init__(self, redis: Redis, storage: LocalStorage | S3Storage, ttl: int) -> None:
        self.redis = redis
        self.storage = storage
        self.ttl = ttl
        # S3: the bucket's expiry rule deletes every object after its days, whatever the file's
        # own expiry says; expires_at never promises more than the store keeps.
        self.retention = (storage.expiry_days() * 86400 if isinstance(storage, S3Storage)
                          else None)

    def _expiry(self, created: int, seconds: int | None) -> int:
        keep = min(seconds or self.ttl, self.ttl)
        if self.retention is not None:
            keep = min(keep, self.retention)
        return created + keep

    async def _save(self, stored: StoredFile) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_meta_key(stored.id), json.dumps(asdict(stored)))
            # Listed by upload time to the microsecond (created_at is whole seconds); a rewrite
            # of Easel's own file keeps its place.
            pipe.zadd(_owner_key(stored.owner), {stored.id: time.time()}, nx=True)
            pipe.zadd(EXPIRY_SET, {stored.id: stored.expires_at})
            await pipe.execute()

    async def add(self, owner: str, filename: str, purpose: str, source: IO[bytes], size: int,
                  expires_after: int | None = None) -> StoredFile:
        """Store an upload (streamed from `source`), then its metadata."""
        created = int(time.time())
        stored = StoredFile(new_file_id(), owner, size, created,
                            self._expiry(created, expires_after), filename, purpose,
                            stored_file_key(new_job_id()))
        content_type = CONTENT_TYPES.get(purpose, "application/octet-stream")
        try:
            await run_in_threadpool(self.storage.put_file, stored.key, source, content_type)
        except StorageError as exc:
            raise storage_unavailable("Storage is unavailable; try again shortly.") from exc
        await self._save(stored)
        return stored

    async def put_bytes(self, owner: str, file_id: str, filename: str, purpose: str,
                        data: bytes, expires_after: int | None = None) -> StoredFile:
        """A file Easel writes (a batch's output): `file_id` is chosen by the caller, so writing
        it again (a driver that died while finalizing) replaces it instead of adding one."""
        old = await self._load(file_id)
        created = old.created_at if old else int(time.time())
        stored = StoredFile(file_id, owner, len(data), created,
                            self._expiry(created, expires_after),
                            filename, purpose, old.key if old else stored_file_key(new_job_id()))
        try:
            await run_in_threadpool(self.storage.put, stored.key, data,
                                    CONTENT_TYPES.get(purpose, "application/octet-stream"))
        except StorageError as exc:
            raise storage_unavailable("Storage is unavailable; try again shortly.") from exc
        await self._save(stored)
        return stored

    async def _load(self, file_id: str) -> StoredFile | None:
        raw = await self.redis.get(_meta_key(file_id))
        return StoredFile(**json.loads(raw)) if raw else None

    async def get(self, owner: str, file_id: str, param: str | None = None) -> StoredFile:
        """The owner's file, or 404 (400 naming `param` where a request refers to it)."""
        stored = await self._load(file_id) if len(file_id) <= 128 else None
        if stored is None or stored.owner != owner or stored.expires_at <= time.time():
            raise no_such_file(file_id, param)
        return stored

    async def read(self, owner: str, file_id: str, param: str | None = None,
                   max_bytes: int | None = None) -> bytes:
        stored = await self.get(owner, file_id, param)
        if max_bytes is not None and stored.bytes > max_bytes:  # refused before it is read
            raise OpenAIError(400, f"Invalid '{param}': the file is larger than the {max_bytes} "
                              "bytes allowed here.", "invalid_request_error", param,
                              "file_too_large")
        try:
            return await run_in_threadpool(self.storage.get, stored.key)
        except StorageError as exc:
            raise storage_unavailable("The file could not be read from storage.") from exc

    async def chunks(self, owner: str, file_id: str) -> tuple[StoredFile, Iterator[bytes]]:
        stored = await self.get(owner, file_id)
        try:
            return stored, await run_in_threadpool(self.storage.chunks, stored.key)
        except StorageError as exc:
            raise storage_unavailable("The file could not be read from storage.") from exc

    async def delete(self, owner: str, file_id: str) -> None:
        await self._remove(await self.get(owner, file_id))

    async def _remove(self, stored: StoredFile) -> None:
        # Metadata first: a file whose bytes outlive a failed delete is unreachable, while one
        # whose metadata outlived its bytes would answer 503 forever.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(_meta_key(stored.id))
            pipe.zrem(_owner_key(stored.owner), stored.id)
            pipe.zrem(EXPIRY_SET, stored.id)
            await pipe.execute()
        try:
            await run_in_threadpool(self.storage.delete, stored.key)
        except StorageError as exc:  # unreachable now; S3's expiry rule removes it in time
            log.warning("file %s: its bytes could not be deleted: %s", stored.id, exc)

    async def list(self, owner: str, *, purpose: str | None, limit: int, after: str | None,
                   descending: bool) -> tuple[list[StoredFile], bool]:
        """A page of the owner's files after the file `after`, and whether more follow."""
        ids = [_text(i) for i in await self.redis.zrange(_owner_key(owner), 0, -1,
                                                         desc=descending)]
        if after is not None:
            ids = ids[ids.index(after) + 1:] if after in ids else []
        page: list[StoredFile] = []
        now = time.time()
        for start in range(0, len(ids), 200):
            chunk = ids[start:start + 200]
            for raw in await self.redis.mget([_meta_key(i) for i in chunk]):
                if raw is None:
                    continue
                stored = StoredFile(**json.loads(raw))
                if stored.expires_at > now and purpose in (None, stored.purpose):
                    page.append(stored)
                    if len(page) > limit:
                        return page[:limit], True
        return page, False

    async def purge(self) -> int:
        """Delete every expired file (bytes and metadata); returns how many went."""
        expired = await self.redis.zrangebyscore(EXPIRY_SET, "-inf", time.time(), start=0,
                                                 num=500)
        for file_id in (_text(i) for i in expired):
            stored = await self._load(file_id)
            if stored is None:
                await self.redis.zrem(EXPIRY_SET, file_id)
            else:
                await self._remove(stored)
        return len(expired)
