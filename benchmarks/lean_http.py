"""A minimal HTTP/1.1 keep-alive client for load generation: requests as prepared bytes, answers
read by Content-Length, one request at a time per connection.

httpx spends 1.1-1.6 ms of CPU per request here, more than the gateway it measures: at 1,000
requests/s on a 2-core machine the load generator alone would need more than a core.  This
client spends about a tenth of that, so the machine's CPU goes to what is measured.  It speaks
just enough HTTP for the gateway's JSON answers (no chunked bodies, no redirects, no TLS).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class _Conn(asyncio.Protocol):
    """One connection; `request` sends bytes and resolves to the answer's status code."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.answer is None or self.answer.done():
            return
        lines = bytes(self.buffer[:end]).lower().split(b"\r\n")
        length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")),
                      0)
        if len(self.buffer) < end + 4 + length:
            return  # the rest of the body is still on its way
        if b"connection: close" in lines:
            self.closed = True
        del self.buffer[:end + 4 + length]
        self.answer.set_result(int(lines[0][9:12]))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanClient:
    """Up to `connections` kept-alive connections to host:port; `post_json` takes an idle one
    (or opens one), and a request cancelled or timed out closes its connection, so the server
    sees the hang-up as it would from any client."""

    def __init__(self, host: str, port: int, connections: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(connections)

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()

    async def _connection(self) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        return conn

    def _raw(self, path: str, body: Any, headers: dict[str, str]) -> bytes:
        data = json.dumps(body, separators=(",", ":")).encode()
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}",
                 "content-type: application/json", f"content-length: {len(data)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + data

    async def post_json(self, path: str, body: Any, headers: dict[str, str]) -> int:
        """The answer's status code; ConnectionError or TimeoutError when there is none."""
        raw = self._raw(path, body, headers)
        async with self.slots:
            conn = await self._connection()
            try:
                async with asyncio.timeout(self.timeout):
                    status = await conn.request(raw)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                self.idle.append(conn)
            return status

