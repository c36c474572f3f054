"""The OpenAI SDK against a real gateway, Redis and worker process (the embedded model)."""

from __future__ import annotations

import base64
import io
import urllib.request

import openai
import pytest
from PIL import Image

from tests.conftest import FAST, Stack


def _png(b64: str | None) -> Image.Image:
    assert b64 is not None
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def test_b64_json_is_a_png_at_the_requested_size(stack: Stack) -> None:
    r = stack.client().images.generate(model="dall-e-2", prompt="a red circle", size="256x256",
                                       response_format="b64_json", extra_body=FAST)
    assert len(r.data) == 1 and r.created > 0
    assert _png(r.data[0].b64_json).size == (256, 256)
    assert r.data[0].url is None


def test_url_downloads_without_credentials(stack: Stack) -> None:
    r = stack.client().images.generate(model="dall-e-2", prompt="a blue square", size="512x512",
                                       response_format="url", extra_body=FAST)
    url = r.data[0].url
    assert url and url.startswith(stack.base_url)
    with urllib.request.urlopen(url) as resp:  # no Authorization header
        image = Image.open(io.BytesIO(resp.read()))
    assert image.size == (512, 512) and image.format == "PNG"


def test_n2_gives_two_different_images(stack: Stack) -> None:
    r = stack.client().images.generate(model="dall-e-2", prompt="two cyan squares", n=2,
                                       size="256x256", response_format="b64_json",
                                       extra_body=FAST)
    a, b = (_png(d.b64_json).tobytes() for d in r.data)
    assert len(r.data) == 2 and a != b


@pytest.mark.parametrize("model,size", [
    ("dall-e-2", "256x256"), ("dall-e-2", "1024x1024"), ("dall-e-3", "1792x1024"),
    ("dall-e-3", "1024x1792"), ("easel-shapes", "64x64"), ("easel-shapes", "128x128")])
def test_each_size(stack: Stack, model: str, size: str) -> None:
    r = stack.client().images.generate(model=model, prompt="a yellow triangle", size=size,  # type: ignore[arg-type]
                                       response_format="b64_json", extra_body=FAST)
    w, h = (int(x) for x in size.split("x"))
    assert _png(r.data[0].b64_json).size == (w, h)


def test_nulls_mean_defaults(stack: Stack) -> None:
    r = stack.client().images.generate(prompt="a green circle", model=None, n=None, size=None,
                                       quality=None, style=None, user=None,
                                       response_format="b64_json", extra_body=FAST)
    assert _png(r.data[0].b64_json).size == (1024, 1024)  # dall-e-2 default size


def test_same_seed_same_pixels_different_seed_different(stack: Stack) -> None:
    c = stack.client()

    def make(seed: int) -> bytes:
        r = c.images.generate(model="easel-shapes", prompt="a purple square", size="64x64",
                              response_format="b64_json", extra_body={**FAST, "seed": seed})
        return _png(r.data[0].b64_json).tobytes()

    assert make(42) == make(42)
    assert make(42) != make(43)


def test_dall_e_3_style_and_quality(stack: Stack) -> None:
    r = stack.client().images.generate(model="dall-e-3", prompt="a red square", quality="hd",
                                       style="natural", response_format="b64_json",
                                       extra_body=FAST)
    assert _png(r.data[0].b64_json).size == (1024, 1024)


def test_sdk_errors_are_typed(stack: Stack) -> None:
    c = stack.client()
    with pytest.raises(openai.NotFoundError) as nf:
        c.images.generate(model="dall-e-9", prompt="x")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as br:
        c.images.generate(model="dall-e-2", prompt="x", size="1792x1024")  # dall-e-3 size
    assert br.value.param == "size"
