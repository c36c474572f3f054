"""Requests shaped exactly as popular clients send them (read from their source; docs/clients.md),
against the real stack: field for field, part names and all, with their default settings."""

from __future__ import annotations

import base64
import io
import urllib.request
import uuid

import httpx
from PIL import Image

from tests.conftest import Stack


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _photo() -> bytes:
    """An opaque JPEG, what a chat user usually uploads."""
    image = Image.new("RGB", (300, 200), (235, 235, 235))
    image.paste((200, 30, 30), (40, 40, 140, 140))
    return _png(image, "JPEG")


def _size_of(item: dict) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size


def test_open_webui_generation(stack: Stack) -> None:
    """routers/images.py: model, prompt, n, size (IMAGE_SIZE, default 512x512); response_format
    b64_json unless the model matches IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN (^gpt-image)."""
    r = httpx.post(f"{stack.base_url}/v1/images/generations", timeout=60, json={
        "model": "dall-e-2", "prompt": "a red circle", "n": 1, "size": "512x512",
        "response_format": "b64_json"})
    assert r.status_code == 200 and _size_of(r.json()["data"][0]) == (512, 512), r.text
    r = httpx.post(f"{stack.base_url}/v1/images/generations", timeout=60, json={
        "model": "gpt-image-1", "prompt": "a red circle", "n": 1, "size": "1024x1024"})
    assert r.status_code == 200 and r.json()["data"][0]["b64_json"], r.text


def test_open_webui_edit_with_default_settings(stack: Stack) -> None:
    """IMAGE_EDIT_MODEL empty: `model=""` as a form field, one `image` part named <uuid>.png;
    dall-e-2 (OpenAI's default) then edits the image's transparent area."""
    image = Image.new("RGBA", (256, 256), (240, 240, 240, 255))
    image.paste((0, 0, 0, 0), (128, 0, 256, 256))
    files = [("image", (f"{uuid.uuid4()}.png", _png(image), "image/png"))]
    data = {"model": "", "prompt": "a blue square on the right", "response_format": "b64_json"}
    r = httpx.post(f"{stack.base_url}/v1/images/edits", data=data, files=files, timeout=60)
    assert r.status_code == 200 and _size_of(r.json()["data"][0]) == (1024, 1024), r.text


def test_open_webui_edit_of_a_photo_with_a_gpt_image_model(stack: Stack) -> None:
    """IMAGE_EDIT_MODEL=gpt-image-1: no response_format (the regex matches), an opaque JPEG."""
    files = [("image", (f"{uuid.uuid4()}.jpg", _photo(), "image/jpeg"))]
    data = {"model": "gpt-image-1", "prompt": "a red circle"}
    r = httpx.post(f"{stack.base_url}/v1/images/edits", data=data, files=files, timeout=60)
    assert r.status_code == 200 and _size_of(r.json()["data"][0]) == (1024, 1024), r.text


def test_n8n_openai_node(stack: Stack) -> None:
    """nodes-langchain OpenAi v2: generate sends no response_format for gpt-image ids (binary
    output from b64_json); edit sends image[] parts, n, size 1024x1024 and quality auto."""
    r = httpx.post(f"{stack.base_url}/v1/images/generations", timeout=60, json={
        "prompt": "a red circle", "model": "gpt-image-1-mini", "quality": "medium",
        "size": "1024x1024"})
    assert r.status_code == 200 and r.json()["data"][0]["b64_json"], r.text
    files = [("image[]", ("data.jpg", _photo(), "image/jpeg"))]
    data = {"prompt": "a red circle", "model": "gpt-image-1", "n": "1", "size": "1024x1024",
            "quality": "auto"}
    r = httpx.post(f"{stack.base_url}/v1/images/edits", data=data, files=files, timeout=60)
    assert r.status_code == 200 and _size_of(r.json()["data"][0]) == (1024, 1024), r.text


def test_librechat_image_tools(stack: Stack) -> None:
    """OpenAIImageTools.js with IMAGE_GEN_OAI_BASEURL set: response_format b64_json on both,
    background/quality/size auto, output_format png; edits as image[] parts."""
    r = httpx.post(f"{stack.base_url}/v1/images/generations", timeout=60, json={
        "model": "gpt-image-1", "prompt": "a red circle", "n": 1, "background": "auto",
        "response_format": "b64_json", "output_format": "png", "quality": "auto",
        "size": "auto"})
    assert r.status_code == 200 and _size_of(r.json()["data"][0]) == (1024, 1024), r.text
    files = [("image[]", ("photo.jpg", _photo(), "image/jpeg"))]
    data = {"model": "gpt-image-1", "prompt": "a red circle", "quality": "auto", "size": "auto",
            "response_format": "b64_json", "output_format": "png"}
    r = httpx.post(f"{stack.base_url}/v1/images/edits", data=data, files=files, timeout=60)
    assert r.status_code == 200 and r.json()["output_format"] == "png", r.text


def test_langchain_dalle_wrapper(stack: Stack) -> None:
    """langchain_community DallEAPIWrapper.run: generate(prompt, n, size, model, quality
    'standard') and it reads `data[].url` only, so the model must answer URLs."""
    r = stack.client().images.generate(prompt="a red circle", n=1, size="1024x1024",
                                       model="dall-e-2", quality="standard")
    url = r.data[0].url
    assert url is not None
    with urllib.request.urlopen(url) as resp:  # fetched without credentials
        assert Image.open(io.BytesIO(resp.read())).size == (1024, 1024)
