"""`Idempotency-Key` on every POST under /v1: a repeat gets the first answer, not a second run.

Per API key (auth off: one shared scope), for `idempotency_window_seconds`:
- the first request with a key runs, and its answer (status, body, the headers that matter) is
  kept with a fingerprint of the request (method, path, body);
- a repeat with the same body gets that answer replayed, marked `Idempotent-Replayed: true`;
- a repeat with another body (or path) is a 400 `idempotency_key_reused`;
- a repeat while the first still runs is a 409 `idempotency_key_in_use` with Retry-After: it
  never runs twice and never waits on another request's connection;
- answers that say "try again" are not kept, so a retry runs: 409, 429, 5xx, a client that hung
  up, a stream (text/event-stream is not replayable), and answers over MAX_STORED bytes.
Multipart bodies are fingerprinted without their boundary, which every SDK retry draws anew.
A pure ASGI middleware: bodies stream through it (hashed on the way), never held twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import OpenAIError, bad_request, unavailable

log = logging.getLogger("easel.gateway")
MAX_STORED = 64 * 1024 * 1024
KEPT_HEADERS = ("content-type", "location", "preference-applied", "cache-control")


class Fingerprint:
    """SHA-256 of method, path and body, with a multipart boundary replaced as it streams."""

    def __init__(self, scope: Scope, headers: Headers) -> None:
        self.hash = hashlib.sha256(f"{scope['method']} {scope['path']}?"
                                   f"{scope.get('query_string', b'').decode('latin-1')}\n"
                                   .encode())
        ctype = headers.get("content-type", "")
        boundary = ctype.partition("boundary=")[2].split(";")[0].strip().strip('"')
        self.boundary = boundary.encode("latin-1") if boundary else b""
        self.tail = b""
        self.size = 0
        self.complete = False

    def update(self, message: Message) -> None:
        if message["type"] != "http.request":
            return
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.boundary:  # keep len-1 bytes back: a boundary may straddle two chunks
            data = (self.tail + chunk).replace(self.boundary, b"\0")
            keep = len(self.boundary) - 1
            self.tail = data[len(data) - keep:] if keep else b""
            chunk = data[:len(data) - keep] if keep else data
        self.hash.update(chunk)
        if not message.get("more_body", False):
            self.hash.update(self.tail)
            self.tail = b""
            self.complete = True

    def digest(self) -> str:
        return self.hash.hexdigest()


def _limit(settings: Any) -> int:
    """The largest body any /v1 POST accepts (a repeat's body is hashed, never stored)."""
    return max(settings.max_body_bytes, settings.max_upload_bytes,
               getattr(settings, "files_max_bytes", 0)) + 1024 * 1024


def _kept(status: int) -> bool:
    return 200 <= status < 500 and status not in (409, 429)


async def _send_json(send: Send, status: int, body: bytes,
                     headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, exc: OpenAIError) -> None:
    headers = [(b"content-type", b"application/json"),
               *((k.lower().encode(), v.encode()) for k, v in exc.headers.items())]
    await _send_json(send, exc.status, json.dumps(exc.envelope()).encode(), headers)


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get("idempotency-key")
        state = scope["app"].state
        settings = state.settings
        if key is None or settings.idempotency_window_seconds <= 0:
            await self.app(scope, receive, send)
            return
        if not key.strip() or len(key) > 255:
            await _send_error(send, bad_request("'Idempotency-Key' must have 1-255 "
                                                "characters.", None, "invalid_idempotency_key"))
            return
        owner = "-"
        if state.keys is not None:
            try:
                owner = state.keys.identify(headers.get("authorization"))
            except OpenAIError:  # the route answers 401 as it always does
                await self.app(scope, receive, send)
                return
        slot = f"easel:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"
        running_ms = int((settings.request_timeout_seconds + settings.body_timeout_seconds
                          + 60) * 1000)
        redis = state.redis
        try:
            claimed = await redis.set(slot, json.dumps({"state": "running"}), nx=True,
                                      px=running_ms)
            raw = None if claimed else await redis.get(slot)
        except (RedisError, OSError):
            await _send_error(send, unavailable("The idempotency store is unavailable; try "
                                                "again shortly."))
            return
        if claimed:
            await self._first(scope, receive, send, slot, headers)
            return
        # Gone meanwhile (its first request just failed): still 409, the retry will run.
        record: dict[str, Any] = json.loads(raw) if raw else {"state": "running"}
        if record["state"] == "running":
            await _send_error(send, OpenAIError(
                409, "A request with this Idempotency-Key is still being processed; retry "
                "shortly to get its answer.", "invalid_request_error", None,
                "idempotency_key_in_use", {"Retry-After": "1"}))
            return
        fingerprint = Fingerprint(scope, headers)
        limit = _limit(settings)
        while not fingerprint.complete and fingerprint.size <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            fingerprint.update(message)
        if fingerprint.size > limit or fingerprint.digest() != record["fingerprint"]:
            await _send_error(send, bad_request(
                "This Idempotency-Key was already used with a different request; use a new "
                "key for a new request.", None, "idempotency_key_reused"))
            return
        await _send_json(send, record["status"], base64.b64decode(record["body"]),
                         [(k.encode(), v.encode()) for k, v in record["headers"]]
                         + [(b"idempotent-replayed", b"true")])

    async def _first(self, scope: Scope, receive: Receive, send: Send, slot: str,
                     headers: Headers) -> None:
        fingerprint = Fingerprint(scope, headers)
        answer: dict[str, Any] = {"status": None, "headers": [], "keep": True}
        body = bytearray()

        async def hashing_receive() -> Message:
            message = await receive()
            fingerprint.update(message)
            return message

        async def capturing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                kept = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in message.get("headers", [])]
                answer["headers"] = [(k, v) for k, v in kept if k in KEPT_HEADERS]
                if any(k == "content-type" and "event-stream" in v for k, v in kept):
                    answer["keep"] = False
            elif message["type"] == "http.response.body" and answer["keep"]:
                body.extend(message.get("body", b""))
                if len(body) > MAX_STORED:
                    answer["keep"] = False
                    body.clear()
            await send(message)

        redis = scope["app"].state.redis
        window_ms = scope["app"].state.settings.idempotency_window_seconds * 1000
        try:
            await self.app(scope, hashing_receive, capturing_send)
        finally:
            status = answer["status"]
            if answer["keep"] and fingerprint.complete and status is not None and _kept(status):
                record = {"state": "done", "fingerprint": fingerprint.digest(), "status": status,
                          "headers": answer["headers"],
                          "body": base64.b64encode(bytes(body)).decode("ascii")}
                await redis.set(slot, json.dumps(record), px=window_ms)
            else:  # nothing worth replaying: the next request with this key runs
                await redis.delete(slot)
