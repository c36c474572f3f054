"""The gateway's `Observe` middleware: a request id on every answer, and each request timed
to its last byte, then counted and logged (service.app's `finished`); and the fields of a
request's log line (core.logs.FIELDS)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import OpenAIError

log = logging.getLogger("easel.gateway")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-Id (at most 128 safe characters), else a new one."""
    given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
    kept = "".join(c for c in given[:128].decode("latin-1") if c in _ID_CHARS)
    return kept or uuid.uuid4().hex


class Observe:
    """Pure ASGI (BaseHTTPMiddleware would copy every answer through a task and a stream).

    `finished(request, status, seconds)` runs once: after the last byte, or when sending
    stopped (the client hung up), so a stream is timed to its last event, not its headers.
    An OpenAIError raised before the answer started (outside the routes' exception handlers)
    is answered by `answer(request, exc)`.
    """

    def __init__(self, app: ASGIApp, finished: Callable[[Request, int, float], None],
                 answer: Callable[[Request, OpenAIError], Response]) -> None:
        self.app = app
        self.finished = finished
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        t0 = time.perf_counter()
        status: int | None = None
        done = False

        async def observed_send(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0] != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            last = message["type"] == "http.response.body" and not message.get("more_body")
            try:
                await send(message)
            finally:
                if last and not done:
                    done = True
                    self._record(scope, status, t0)

        try:
            await self.app(scope, receive, observed_send)
        except OpenAIError as exc:  # raised here, outside the routes' exception handlers
            if status is not None:
                raise
            await self.answer(Request(scope), exc)(scope, receive, observed_send)
        finally:
            if status is not None and not done:  # the client hung up mid-answer
                done = True
                self._record(scope, status, t0)

    def _record(self, scope: Scope, status: int | None, t0: float) -> None:
        try:
            self.finished(Request(scope), status or 500, time.perf_counter() - t0)
        except Exception:  # metrics and logs must never break an answer
            log.exception("recording a finished request failed")



def request_fields(request: Request, endpoint: str, status: int, seconds: float,
                   error: OpenAIError | None) -> dict[str, Any]:
    ctx = getattr(request.state, "ctx", None)
    fields: dict[str, Any] = {"request_id": getattr(request.state, "request_id", None),
                              "method": request.method, "endpoint": endpoint, "status": status,
                              "seconds": round(seconds, 4)}
    for key in ("model", "job_id", "user"):
        if getattr(ctx, key, None):
            fields[key] = getattr(ctx, key)
    if getattr(ctx, "images", 0):
        fields["images"] = ctx.images  # type: ignore[union-attr]
    if error is not None:
        fields["error_type"], fields["error_code"] = error.type, error.code
    stream = getattr(ctx, "stream", None)
    if stream is not None:
        fields["stream"] = stream.outcome
        fields["images"] = stream.images
        if stream.first_partial is not None:
            fields["first_partial_seconds"] = round(stream.first_partial, 4)
    return fields
