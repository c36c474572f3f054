"""What the gateway's `observe` middleware (service.app) needs: a response that says when its
last byte is out, and the fields of a request's log line (core.logs.FIELDS)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from core.errors import OpenAIError

log = logging.getLogger("easel.gateway")


class Finished(Response):
    """Sends `inner` unchanged, then calls `done` once: after the last byte, or when sending
    stopped (the client hung up).  A stream is timed to its last event, not to its headers."""

    def __init__(self, inner: Response, done: Callable[[], None]) -> None:
        self.inner = inner
        self.done = done
        self.status_code = inner.status_code
        self.raw_headers = inner.raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            try:
                self.done()
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
