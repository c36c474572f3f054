"""Where images live: the local disk (the embedded default) or any S3-compatible store."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from core.settings import CommonSettings

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class StorageError(Exception):
    """Storage unreachable or an object missing; callers turn it into a clean API error."""


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def url(self, key: str, base_url: str) -> str: ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Files under one root; the gateway serves them at `<base_url>/files/<key>`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half an image, a retry simply replaces it.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"no object {key}") from exc

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/files/{_safe_key(key)}"

    def purge_older_than(self, seconds: float) -> int:
        """Delete stored files older than `seconds` (expired URLs); returns how many."""
        cutoff = time.time() - seconds
        removed = 0
        for path in self.root.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue  # raced with another purge or a writer: nothing to do
        return removed


class S3Storage:
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
            raise StorageError(f"S3 put {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=_safe_key(key))
            return bytes(obj["Body"].read())
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 get {key} failed: {exc}") from exc

    def url(self, key: str, base_url: str) -> str:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": _safe_key(key)},
            ExpiresIn=self.ttl))

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


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
