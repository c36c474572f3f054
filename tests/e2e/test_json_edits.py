"""Edits as JSON (`images: [{"image_url": ...}]`, `mask: {"image_url": ...}`) through the stack:
data: URLs, and http URLs fetched by the gateway only from hosts the operator allows."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Stack
from tests.support import Gateway, wait_ready


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


SOURCE = _png(Image.new("RGB", (128, 128), (240, 240, 240)))


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 holding source.png: a private address."""
    folder: Path = tmp_path_factory.mktemp("served")
    (folder / "source.png").write_bytes(SOURCE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/source.png"
    httpd.shutdown()


@pytest.fixture(scope="module")
def trusting(stack: Stack) -> Iterator[Gateway]:
    """A gateway whose operator allows fetching from private addresses."""
    gateway = Gateway(dict(stack.env, EASEL_FETCH_PRIVATE_URLS="true")).start()
    wait_ready(gateway.base_url)
    yield gateway
    gateway.stop()


def _edit(base_url: str, **body: object) -> httpx.Response:
    body = {"model": "gpt-image-1", "prompt": "a red circle", "steps": 4, **body}
    return httpx.post(f"{base_url}/v1/images/edits", json=body, timeout=60)


def test_data_url_image_and_mask(stack: Stack) -> None:
    mask = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 0, 128, 128))
    r = _edit(stack.base_url, images=[{"image_url": _data_url(SOURCE)}],
              mask={"image_url": _data_url(_png(mask))}, size="1536x1024", quality="low")
    assert r.status_code == 200, r.text
    body = r.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.size == (1536, 1024)
    # The response describes itself the way gpt-image responses do.
    assert (body["background"], body["output_format"], body["quality"], body["size"]) == (
        "opaque", "png", "low", "1536x1024")
    usage = body["usage"]
    assert usage["input_tokens_details"] == {"text_tokens": 3, "image_tokens": 0}
    assert usage["output_tokens_details"] == {"image_tokens": usage["output_tokens"],
                                              "text_tokens": 0}


def test_a_private_url_is_refused_by_default(stack: Stack, image_server: str) -> None:
    r = _edit(stack.base_url, images=[{"image_url": image_server}])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("images[0].image_url", "image_url_refused")


def test_a_private_url_is_fetched_when_allowed(trusting: Gateway, image_server: str) -> None:
    r = _edit(trusting.base_url, images=[{"image_url": image_server}], size="1024x1024")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body,param", [
    ({"images": [{"file_id": "file-123"}]}, "images[0].file_id"),
    ({"images": [{}]}, "images[0].image_url"),
    ({"images": []}, "images"),
    ({"images": [{"image_url": "data:,x"}] * 2}, "images"),  # one image per pipeline
    ({"images": [{"image_url": "data:,x", "detail": "high"}]}, "images[0].detail"),
    ({"images": "https://example.com/a.png"}, "images"),
    ({"images": [{"image_url": "data:,x"}], "style": "vivid"}, "style"),
])
def test_json_edit_errors_name_the_field(stack: Stack, body: dict, param: str) -> None:
    r = _edit(stack.base_url, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
