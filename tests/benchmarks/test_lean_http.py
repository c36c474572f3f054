"""The benchmarks' lean HTTP client against a scripted server: answers read by Content-Length
even when they arrive in pieces, connections kept alive or dropped as the server says, and a
cancelled request hangs up (what the gateway benchmark's hold phase relies on)."""

from __future__ import annotations

import asyncio

from benchmarks.lean_http import LeanClient


def test_answers_connections_and_hang_ups() -> None:
    async def run() -> tuple[list[int], int, bool]:
        accepted = 0
        hung_up = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                if b"hold" in body:  # never answered: the client must hang up
                    if not await reader.read(1):
                        hung_up.set()
                    return
                close = b"close" in body
                answer = (b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 2\r\n"
                          + (b"connection: close\r\n" if close else b"") + b"\r\n{}")
                for i in range(len(answer)):  # byte by byte: parsing must wait for the rest
                    writer.write(answer[i:i + 1])
                    await writer.drain()
                if close:
                    writer.close()
                    return

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with LeanClient("127.0.0.1", port, connections=1, timeout=5) as client:
            statuses = [await client.post_json("/x", {"n": i}, {}) for i in range(3)]
            statuses.append(await client.post_json("/x", {"close": 1}, {}))
            statuses.append(await client.post_json("/x", {"n": 4}, {}))  # a new connection
            waiting = asyncio.ensure_future(client.post_json("/x", {"hold": 1}, {}))
            await asyncio.sleep(0.2)
            waiting.cancel()
            await asyncio.wait_for(hung_up.wait(), 5)
        server.close()
        return statuses, accepted, hung_up.is_set()

    statuses, accepted, hung_up = asyncio.run(run())
    assert statuses == [504] * 5
    assert accepted == 2  # one kept alive for 4 requests, a new one after "connection: close"
    assert hung_up
