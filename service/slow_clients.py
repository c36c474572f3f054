"""Deadlines for clients that send slowly or never finish (slowloris), which uvicorn lacks.

uvicorn closes idle kept-alive connections but has no timer for a request's line and headers:
a client that sends a few header bytes a minute holds its connection forever, and with
httptools no cap on header size either.  `guarded_protocol` adds both at the protocol level:
a connection's request line and headers must arrive within `header_timeout` seconds and
`max_header_bytes`, else it is closed (408 / 431).  `BodyDeadline` bounds the body in the app:
all of it within `seconds` of the headers, else 408.  A reverse proxy in front can do the same
(docs/deploy.md#reverse-proxy); these hold when the gateway is exposed directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import OpenAIError

_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
        b"connection: close\r\n\r\n")


def guarded_protocol(header_timeout: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11) with a header deadline and size cap."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        # Both uvicorn protocols start a new `cycle` exactly when a request's headers are
        # complete: that is the signal used here, so neither parser's callbacks are touched.
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is closed too

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            if self._deadline is None and (before is None or before.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection
            if self._deadline is not None:
                self._header_bytes += len(data)
            super().data_received(data)
            if self.cycle is not before:
                self._disarm()
            elif self._deadline is not None and self._header_bytes > max_header_bytes:
                self._close(_431)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_bytes = 0
            self._deadline = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            self._close(_408 if self._header_bytes else b"")

        def _close(self, answer: bytes) -> None:
            self._disarm()
            if not self.transport.is_closing():
                if answer:
                    self.transport.write(answer)
                self.transport.close()

    return GuardedHTTPProtocol


class BodyDeadline:
    """ASGI middleware: the whole request body within `seconds` of the headers, else 408.

    Only body messages are timed; once the body is complete, `receive` is the client's hang-up
    signal, which long renders and streams wait on for as long as they run.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    message = await receive()
            except TimeoutError:
                raise OpenAIError(408, f"The request body did not arrive within "
                                  f"{self.seconds:g} seconds.", "invalid_request_error", None,
                                  "request_timeout", {"Connection": "close"}) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, timed_receive, send)
