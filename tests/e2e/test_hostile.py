"""Security audit, gateway items (issue 11), against real gateways under uvicorn: Host headers
and result URLs, and clients that send slowly (slowloris) or too much before the body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import FAST, Stack
from tests.support import Gateway

HEADER_TIMEOUT = 1.0  # seconds, for the hardened gateway below
MAX_HEADER_BYTES = 8192


@pytest.fixture(scope="module")
def open_gateway(stack: Stack) -> Iterator[Gateway]:
    """Answers any Host (as on a public bind with nothing configured), with short deadlines."""
    env = dict(stack.env, EASEL_ALLOWED_HOSTS="*",
               EASEL_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
               EASEL_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES), EASEL_BODY_TIMEOUT_SECONDS="1")
    gw = Gateway(env).start()
    yield gw
    gw.stop()


def _generate(base_url: str, host: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/images/generations", headers={"host": host}, timeout=120,
                      json={"model": "dall-e-2", "prompt": "a red circle", "size": "256x256",
                            "response_format": "url", **FAST})


def test_result_urls_never_carry_an_unchecked_host(open_gateway: Gateway) -> None:
    r = _generate(open_gateway.base_url, "evil.example")
    assert r.status_code == 200, r.text[:300]
    url = r.json()["data"][0]["url"]
    # Not the client's Host: the address the connection arrived on.
    assert url.startswith(f"{open_gateway.base_url}/files/images/"), url
    assert httpx.get(url).status_code == 200


def test_an_allowed_host_still_names_result_urls(stack: Stack) -> None:
    port = stack.base_url.rsplit(":", 1)[1]
    r = _generate(stack.base_url, f"localhost:{port}")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["data"][0]["url"].startswith(f"http://localhost:{port}/files/images/")
    refused = _generate(stack.base_url, f"evil.example:{port}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_host"


def _connect(gw: Gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=HEADER_TIMEOUT + 4)
    return sock


def _closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes the connection, and what it sent before."""
    t0, got = time.monotonic(), b""
    while chunk := sock.recv(4096):  # socket.timeout (the test fails) if it is never closed
        got += chunk
    return time.monotonic() - t0, got


def test_twenty_slow_header_connections_are_closed_on_time(open_gateway: Gateway) -> None:
    socks = [_connect(open_gateway) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # never finished
    t0 = time.monotonic()
    answers = [_closed_after(sock)[1] for sock in socks]
    assert time.monotonic() - t0 < HEADER_TIMEOUT + 3
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]
    for sock in socks:
        sock.close()
    assert httpx.get(f"{open_gateway.base_url}/healthz").status_code == 200  # still serving


def test_a_connection_that_sends_nothing_is_closed(open_gateway: Gateway) -> None:
    with _connect(open_gateway) as sock:
        seconds, got = _closed_after(sock)
    assert seconds < HEADER_TIMEOUT + 3 and got == b""


def test_headers_over_the_cap_are_431(open_gateway: Gateway) -> None:
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 990) for i in range(MAX_HEADER_BYTES // 900))
    with _connect(open_gateway) as sock:
        # One send, never finished: cut off by size at once, not by the deadline (408).
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad)
        try:
            got = _closed_after(sock)[1]
        except ConnectionResetError:  # closed with some of our bytes unread: a reset, no 431
            got = b"HTTP/1.1 431 (reset)"
    assert got.startswith(b"HTTP/1.1 431"), got[:100]


def test_a_body_that_stalls_is_408(open_gateway: Gateway) -> None:
    with _connect(open_gateway) as sock:
        sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\"")
        seconds, got = _closed_after(sock)
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b'"code":"request_timeout"' in got and seconds < 4


def test_normal_clients_are_unaffected(open_gateway: Gateway) -> None:
    # Keep-alive: requests after the first on one connection get their own header deadline;
    # a body far larger than the header cap, arriving with the headers, is not counted in it.
    with httpx.Client(base_url=open_gateway.base_url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        r = client.post("/v1/images/generations",
                        json={"model": "dall-e-2", "prompt": "x" * (10 * MAX_HEADER_BYTES)})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        assert client.get("/healthz").status_code == 200
        # Answered before its body is read: the rest of the body is still the same request.
        r = client.post("/v1/images/generations", content=b"x" * (40 * MAX_HEADER_BYTES),
                        headers={"content-type": "text/plain"})
        assert r.status_code == 415
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
