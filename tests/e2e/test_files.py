"""The Files API through the official SDK against the real stack: upload, list, read back and
delete, and an uploaded image used by `file_id` in a JSON edit rendering exactly what the same
image sent as a data: URL renders."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from tests.conftest import Stack


def _png() -> bytes:
    image = Image.new("RGB", (128, 128), (240, 240, 240))
    image.paste((200, 20, 20), (32, 32, 96, 96))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_files_round_trip_through_the_sdk(stack: Stack) -> None:
    client = stack.client()
    data = b'{"custom_id": "a"}\n' * 1000
    made = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert (made.bytes, made.purpose, made.filename) == (len(data), "batch", "requests.jsonl")
    assert made.id in [f.id for f in client.files.list(purpose="batch")]
    assert client.files.retrieve(made.id).bytes == len(data)
    assert client.files.content(made.id).read() == data
    assert client.files.delete(made.id).deleted
    assert made.id not in [f.id for f in client.files.list()]


def test_an_edit_by_file_id_renders_like_the_same_image_by_url(stack: Stack) -> None:
    client = stack.client()
    source = _png()
    uploaded = client.files.create(file=("source.png", source), purpose="vision")
    body = {"model": "gpt-image-1", "prompt": "a red square", "steps": 4, "seed": 11,
            "size": "1024x1024", "quality": "low"}
    url = "data:image/png;base64," + base64.b64encode(source).decode()
    answers = [httpx.post(f"{stack.base_url}/v1/images/edits", timeout=120,
                          json={**body, "images": [image]})
               for image in ({"file_id": uploaded.id}, {"image_url": url})]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    pixels = [Image.open(io.BytesIO(base64.b64decode(a.json()["data"][0]["b64_json"]))).tobytes()
              for a in answers]
    assert pixels[0] == pixels[1]
    client.files.delete(uploaded.id)
    gone = httpx.post(f"{stack.base_url}/v1/images/edits", timeout=60,
                      json={**body, "images": [{"file_id": uploaded.id}]})
    assert (gone.status_code, gone.json()["error"]["param"]) == (400, "images[0].file_id")
