"""Deadlines for clients that send slowly or never finish (slowloris), which uvicorn lacks.

uvicorn closes idle kept-alive connections but has no timer for a request's line and headers:
a client that sends a few header bytes a minute, or connects and sends nothing, holds its
connection forever, and with httptools there is no cap on header size either.
`guarded_protocol` adds both at the protocol level: a request's line and headers must arrive
within `header_timeout` seconds and `max_header_bytes`, else the connection is closed (408 /
431); the parsers' own callbacks mark where headers start and end, so bodies never count.
`BodyDeadline` bounds the body in the app: all of it within `seconds`, else 408.  A reverse
proxy in front can do the same (docs/deploy.md#reverse-proxy); these hold when the gateway is
exposed directly.
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
    """uvicorn's HTTP protocol (httptools, or h11 without it) with a header deadline and, for
    httptools, a header size cap (h11 has its own: h11_max_incomplete_event_size)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class Guarded(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _in_headers = False  # between a request's first byte and the end of its headers

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            self._close(_408 if self._in_headers else b"")

        def _close(self, answer: bytes) -> None:
            self._disarm()
            if not self.transport.is_closing():
                if answer:
                    self.transport.write(answer)
                self.transport.close()

    if not hasattr(base, "on_message_begin"):  # h11: its states say where a request stands
        import h11

        class GuardedH11(Guarded):
            def data_received(self, data: bytes) -> None:
                if self.conn.their_state is h11.IDLE:
                    self._in_headers = True
                    self._arm()  # the first bytes of the next request on a kept-alive connection
                super().data_received(data)
                if self.conn.their_state is not h11.IDLE:
                    self._in_headers = False
                    self._disarm()

        return GuardedH11

    class GuardedHttpTools(Guarded):
        # httptools buffers a header until it is complete, so the cap counts raw bytes while a
        # request's headers are open (a pipelined request may count its predecessor's last bytes).
        _header_bytes = 0

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers, self._header_bytes = True, 0
            self._arm()  # the first bytes of the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._disarm()
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_headers:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._close(_431)

    return GuardedHttpTools


class BodyDeadline:
    """ASGI middleware: the whole request body within `seconds` of the route starting to read
    it (right after the headers), else 408.

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
        deadline: float | None = None
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done, deadline
            if body_done:
                return await receive()
            if deadline is None:  # from the first read: routes read the body before anything
                deadline = loop.time() + self.seconds
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
