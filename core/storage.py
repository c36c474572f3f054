"""Where images live: the local disk (the embedded default) or any S3-compatible store."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from core.jobs import STORED_PREFIX, is_result_key
from core.settings import CommonSettings

CHUNK = 1 << 20  # streamed uploads and downloads move this many bytes at a time
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def sniff(data: bytes) -> str | None:
    """The format ("png", "jpeg", "webp") a file's first bytes declare, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


EXPIRY_RULE_ID = "easel-expire"  # the bucket lifecycle rule S3Storage.ensure_bucket sets
log = logging.getLogger("easel.storage")


class StorageError(Exception):
    """Storage unreachable or an object missing; callers turn it into a clean API error."""


class Observed:
    """A failed put or get is reported to `on_error(op)` (easel_storage_errors_total), then
    raised as StorageError."""

    on_error: Callable[[str], None] | None = None

    def _failed(self, op: str, message: str) -> StorageError:
        if self.on_error is not None:
            try:
                self.on_error(op)
            except Exception as exc:  # a metric must never mask the storage error
                log.debug("storage error hook failed: %s", exc)
        return StorageError(message)


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def url(self, key: str, base_url: str) -> str: ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def _public_key(key: str) -> str:
    """Only results get a URL: inputs and previews live under private ids and stay private."""
    if not is_result_key(_safe_key(key)):
        raise StorageError(f"no URL is made for {key!r}: only result images are served")
    return key


class LocalStorage(Observed):
    """Files under one root; the gateway serves them at `<base_url>/files/<key>`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        try:
            self._write(target, data)
        except OSError as exc:  # disk full, read-only, permissions
            raise self._failed("put", f"writing {key} failed: {exc}") from exc

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        # Write then rename: a reader never sees half an image, a retry simply replaces it.
        for attempt in (1, 2):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
                break
            except FileNotFoundError:  # a purge removed the new, still empty directory
                if attempt == 2:
                    raise
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def put_file(self, key: str, source: IO[bytes], content_type: str) -> None:
        """Like `put`, from a file object copied a chunk at a time (Files API uploads)."""
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(source, f, CHUNK)
            os.replace(tmp, target)
        except OSError as exc:
            raise self._failed("put", f"writing {key} failed: {exc}") from exc

    def chunks(self, key: str) -> Iterator[bytes]:
        """The object a chunk at a time; opened before the first chunk is asked for, so a
        missing object raises here, not halfway through a response."""
        try:
            f = self.path(key).open("rb")
        except OSError as exc:
            raise self._failed("get", f"no object {key}: {exc}") from exc

        def read() -> Iterator[bytes]:
            with f:
                while block := f.read(CHUNK):
                    yield block

        return read()

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise self._failed("delete", f"deleting {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise self._failed("get", f"no object {key}") from exc
        except OSError as exc:
            raise self._failed("get", f"reading {key} failed: {exc}") from exc

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/files/{_public_key(key)}"

    def purge_older_than(self, seconds: float) -> int:
        """Delete stored files older than `seconds` (expired URLs), then the directories left
        empty (one per job, so they would pile up); returns how many files went."""
        cutoff = time.time() - seconds
        removed = 0
        directories = []
        stored = self.root / STORED_PREFIX  # Files API objects expire by their own metadata
        for path in self.root.rglob("*"):
            if path == stored or stored in path.parents:
                continue
            try:
                if path.is_dir():
                    directories.append(path)
                elif path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # raced with another purge or a writer: nothing to do
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            try:
                directory.rmdir()  # only if empty; a writer that loses this race retries
            except OSError:
                continue
        return removed


class S3Storage(Observed):
    """boto3 against AWS S3, MinIO or SeaweedFS; URLs are presigned GETs with a TTL."""

    def __init__(self, bucket: str, ttl: int, client: Any) -> None:
        self.bucket = bucket
        self.ttl = ttl
        self.client = client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=_safe_key(key), Body=data,
                                   ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("put", f"S3 put {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=_safe_key(key))
            return bytes(obj["Body"].read())
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("get", f"S3 get {key} failed: {exc}") from exc

    def put_file(self, key: str, source: IO[bytes], content_type: str) -> None:
        """Like `put`, from a file object (boto3 sends a large one as a multipart upload)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_fileobj(source, self.bucket, _safe_key(key),
                                       ExtraArgs={"ContentType": content_type})
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("put", f"S3 put {key} failed: {exc}") from exc

    def chunks(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=_safe_key(key))["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("get", f"S3 get {key} failed: {exc}") from exc
        return iter(body.iter_chunks(CHUNK))

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=_safe_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("delete", f"S3 delete {key} failed: {exc}") from exc

    def url(self, key: str, base_url: str) -> str:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": _public_key(key)},
            ExpiresIn=self.ttl))

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
        self.ensure_expiry()

    def expiry_days(self) -> int:
        """Objects are kept a whole day at least (lifecycle rules count in days), and never
        less than their URLs stay valid."""
        return max(1, math.ceil(self.ttl / 86400))

    def ensure_expiry(self) -> bool:
        """Best effort: a lifecycle rule that deletes every object `expiry_days` after it was
        written, so the bucket does not grow forever.  A bucket with lifecycle rules of its own
        is left alone, and a store that refuses (no permission, no lifecycle support) is only
        logged: images are still served, they just never expire.  Returns whether the rule is in
        place.  SeaweedFS stores the rule but enforces it only through its admin+worker stack or
        the bucket's lifecycle TTL fast path, which compose's s3-bucket service turns on."""
        from botocore.exceptions import ClientError

        days = self.expiry_days()
        try:
            rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                log.warning("bucket %s: cannot read its lifecycle rules (%s); objects will not "
                            "expire unless the store has a rule (docs/deploy.md, \"Retention\")",
                            self.bucket, exc)
                return False
            rules = []
        ours = [r for r in rules if r.get("ID") == EXPIRY_RULE_ID]
        if [r for r in rules if r.get("ID") != EXPIRY_RULE_ID]:
            log.warning("bucket %s has lifecycle rules of its own; Easel leaves them as they are "
                        "and adds no %d-day expiry", self.bucket, days)
            return bool(ours)
        if ours and ours[0].get("Status") == "Enabled" and \
                ours[0].get("Expiration", {}).get("Days") == days:
            return True
        rule = {"ID": EXPIRY_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
                "Expiration": {"Days": days}}
        try:
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [rule]})
        except ClientError as exc:
            log.warning("bucket %s: cannot set a lifecycle rule (%s); objects will never expire: "
                        "add an expiration rule yourself (docs/deploy.md, \"Retention\")",
                        self.bucket, exc)
            return False
        log.info("bucket %s: objects now expire %d day(s) after they are written (lifecycle "
                 "rule %s)", self.bucket, days, EXPIRY_RULE_ID)
        return True


def make_storage(settings: CommonSettings) -> LocalStorage | S3Storage:
    if settings.storage == "local":
        return LocalStorage(settings.storage_dir)
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    client = boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"},
                      connect_timeout=5, read_timeout=30),
    )
    return S3Storage(settings.s3_bucket, settings.url_ttl_seconds, client)
