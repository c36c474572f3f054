"""Image URLs of JSON edits: data: URLs, and http(s) fetched with a cap, a deadline and no
private targets unless the operator allows them (a local HTTP server plays the remote host)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator

import pytest

from core.errors import OpenAIError
from service.fetch import is_public, load_image_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/image.png")
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_error(404)
            return
        body = PNG * (1000 if self.path == "/big" else 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _load(url: str, limit: int = 10_000, timeout: float = 5, allow: bool = False) -> bytes:
    return asyncio.run(load_image_url(url, "images[0].image_url", limit, timeout, allow))


def _refusal(url: str, **kw: object) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        _load(url, **kw)  # type: ignore[arg-type]
    assert info.value.status == 400 and info.value.param == "images[0].image_url"
    return info.value


def test_data_urls_are_decoded() -> None:
    assert _load("data:image/png;base64," + base64.b64encode(PNG).decode()) == PNG
    assert _refusal("data:image/png;base64,@@@").code == "invalid_image_url"
    big = "data:image/png;base64," + base64.b64encode(PNG * 200).decode()
    assert _refusal(big, limit=1000).code == "file_too_large"


def test_loopback_is_refused_by_default(server: str) -> None:
    error = _refusal(f"{server}/image.png")
    assert error.code == "image_url_refused" and "EASEL_FETCH_PRIVATE_URLS" in error.message


def test_a_private_host_is_fetched_when_the_operator_allows_it(server: str) -> None:
    assert _load(f"{server}/image.png", allow=True) == PNG
    assert _load(f"{server}/redirect", allow=True) == PNG  # redirects are followed, checked
    assert _refusal(f"{server}/missing", allow=True).code == "invalid_image_url"


def test_size_cap_and_deadline(server: str) -> None:
    assert _refusal(f"{server}/big", limit=5000, allow=True).code == "file_too_large"
    t0 = time.monotonic()
    assert _refusal(f"{server}/slow", timeout=0.5, allow=True).code == "image_url_timeout"
    assert time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x",
                                 "http://user:pw@example.com/a.png", "not a url"])
def test_other_schemes_and_credentials_are_refused(url: str) -> None:
    assert _refusal(url).code == "invalid_image_url"


@pytest.mark.parametrize("ip,public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.1.1", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
    ("8.8.8.8", True), ("2606:4700:4700::1111", True)])
def test_what_counts_as_public(ip: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(ip)) is public
