"""Edits (inpainting, outpainting) and variations through the SDK, judged numerically."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from models.shapes.checker import segment
from models.shapes.world import Obj, Scene, render
from tests.conftest import Stack


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _decode(b64: str | None) -> Image.Image:
    assert b64
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def _scene_image(size: int = 256) -> Image.Image:
    """A red circle on the left half of a white canvas."""
    return render(Scene("a red circle", "single", (Obj("red", "circle", 0.25, 0.5, 0.3),)), size)


def _right_half_mask(size: int = 256) -> Image.Image:
    mask = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (size // 2, 0, size, size))  # transparent = edit here
    return mask


def test_inpaint_keeps_outside_and_draws_inside(stack: Stack) -> None:
    image, mask = _scene_image(), _right_half_mask()
    r = stack.client().images.edit(
        image=("scene.png", _png_bytes(image), "image/png"),
        mask=("mask.png", _png_bytes(mask), "image/png"),
        prompt="a blue square on the right", model="easel-shapes", size="256x256",
        response_format="b64_json", extra_body={"seed": 3})
    out = np.asarray(_decode(r.data[0].b64_json), dtype=np.float32)
    src = np.asarray(image, dtype=np.float32)
    left, right = slice(0, 128), slice(128, 256)
    assert np.abs(out[:, left] - src[:, left]).mean() < 2.0  # preserved outside the mask
    assert np.abs(out[:, right] - src[:, right]).mean() > 10.0  # changed inside it
    found = segment(Image.fromarray(out.astype(np.uint8)))
    assert any(f.colour == "red" and f.cx < 0.5 for f in found)  # the old object, outside
    assert any(f.colour == "blue" and f.cx > 0.5 for f in found)  # the new one, inside


def test_outpainting_fills_a_transparent_border(stack: Stack) -> None:
    inner = _scene_image(128)
    canvas = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    canvas.paste(inner.convert("RGBA"), (64, 64))
    r = stack.client().images.edit(image=[("canvas.png", _png_bytes(canvas), "image/png")],
                                   prompt="a red circle", model="dall-e-2", size="256x256",
                                   response_format="b64_json", extra_body={"steps": 8})
    out = np.asarray(_decode(r.data[0].b64_json), dtype=np.float32)
    centre = out[64:192, 64:192]
    assert np.abs(centre - np.asarray(inner, dtype=np.float32)).mean() < 2.0
    # The border was transparent black; filled from a white canvas it is the world's background.
    assert out[:64].mean() > 150 and out[-64:].mean() > 150


def test_variations_are_alike_but_different(stack: Stack) -> None:
    image = _scene_image()
    r = stack.client().images.create_variation(image=_png_bytes(image), n=2, size="256x256",
                                               model="dall-e-2", response_format="b64_json")
    a, b = (np.asarray(_decode(d.b64_json), dtype=np.float32) for d in r.data)
    src = np.asarray(image, dtype=np.float32)
    assert np.abs(a - b).mean() > 0.5  # n images differ from each other
    for v in (a, b):
        assert 0.5 < np.abs(v - src).mean() < 60  # like the input, not identical


Files = list[tuple[str, tuple[str, bytes, str]]]


def _edit(stack: Stack, files: Files, **data: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/images/edits", files=files,
                      data={"prompt": "a red circle", **data}, timeout=60)


def _tiny_png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


@pytest.mark.parametrize("case,param", [
    ("not-an-image", "image"), ("truncated", "image"), ("bomb", "image"),
    ("mask-no-alpha", "mask"), ("mask-wrong-size", "mask"), ("opaque-no-mask", "image"),
    ("dall-e-3", "model"), ("no-image", "image"), ("bad-n", "n"),
])
def test_bad_uploads_are_400(stack: Stack, case: str, param: str) -> None:
    good = _png_bytes(_scene_image().convert("RGBA"))
    rgb_mask = _png_bytes(Image.new("RGB", (256, 256)))
    files = {"not-an-image": [("image", ("a.png", b"GIF89a....", "image/png"))],
             "truncated": [("image", ("a.png", good[: len(good) // 2], "image/png"))],
             "bomb": [("image", ("a.png", _tiny_png_header(60000, 60000), "image/png"))],
             "mask-no-alpha": [("image", ("a.png", good, "image/png")),
                               ("mask", ("m.png", rgb_mask, "image/png"))],
             "mask-wrong-size": [("image", ("a.png", good, "image/png")),
                                 ("mask", ("m.png", _png_bytes(_right_half_mask(128)),
                                           "image/png"))],
             "opaque-no-mask": [("image", ("a.png", good, "image/png"))],
             "dall-e-3": [("image", ("a.png", good, "image/png"))],
             "no-image": [("mask", ("m.png", good, "image/png"))],
             "bad-n": [("image", ("a.png", good, "image/png"))]}[case]
    data = {"model": "dall-e-3"} if case == "dall-e-3" else {"model": "dall-e-2"}
    if case == "bad-n":
        data["n"] = "many"
    r = _edit(stack, files, **data)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_format_is_sniffed_not_taken_from_the_filename(stack: Stack) -> None:
    """The SDK sends bytes as `upload` / application/octet-stream; a JPEG named .png works."""
    buf = io.BytesIO()
    _scene_image().save(buf, "JPEG")
    with pytest.raises(openai.BadRequestError):  # opaque JPEG, dall-e-2, no mask: a clear 400
        stack.client().images.edit(image=buf.getvalue(), prompt="x", model="dall-e-2")
    r = stack.client().images.edit(image=buf.getvalue(), prompt="a red circle",
                                   model="easel-shapes", response_format="b64_json",
                                   extra_body={"steps": 4})
    assert _decode(r.data[0].b64_json).size == (256, 256)


def test_repeated_image_parts_are_all_read(stack: Stack) -> None:
    """Repeated `image` parts are several images, like `image[]`: not one silently dropped
    (the pipeline uses one, so two are a 400 by default; tests/e2e/test_upload_hardening.py)."""
    png = _png_bytes(_scene_image().convert("RGBA"))
    files = [("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))]
    r = httpx.post(f"{stack.base_url}/v1/images/edits", files=files,
                   data={"prompt": "a blue circle", "model": "easel-shapes", "steps": "4",
                         "response_format": "b64_json", "seed": str(random.randint(0, 99))},
                   timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "image", r.text
    assert "got 2" in r.json()["error"]["message"]


def test_dall_e_2_takes_one_image_whatever_the_operator_allows(stack: Stack) -> None:
    png = _png_bytes(_scene_image().convert("RGBA"))
    files = [("image[]", ("a.png", png, "image/png"))] * 2
    r = _edit(stack, files, model="dall-e-2")
    assert r.status_code == 400 and r.json()["error"]["param"] == "image", r.text
    assert "at most 1 image" in r.json()["error"]["message"]


def test_empty_fields_mean_not_given(stack: Stack) -> None:
    """Open WebUI's default edit settings send `model=""` (and no size): the default model."""
    transparent = _scene_image(128).convert("RGBA")
    transparent.paste((0, 0, 0, 0), (64, 0, 128, 128))
    r = _edit(stack, [("image", ("upload.png", _png_bytes(transparent), "image/png"))],
              model="", size="", n="", response_format="b64_json", steps="4")
    assert r.status_code == 200, r.text  # dall-e-2, OpenAI's default


@pytest.mark.parametrize("path,model,given,size", [
    ("edits", "easel-shapes", (128, 128), (256, 256)),
    ("edits", "gpt-image-1", (1536, 1024), (1024, 1024)),
    ("variations", "dall-e-2", (512, 512), (1024, 1024))])
def test_without_size_the_result_has_the_models_default_size(
        stack: Stack, path: str, model: str, given: tuple[int, int],
        size: tuple[int, int]) -> None:
    """OpenAI's default, not the input's size (each input has a size the model allows)."""
    image = _scene_image(given[1]).resize(given)
    files = [("image", ("a.png", _png_bytes(image), "image/png"))]
    data = {"model": model, "response_format": "b64_json", "steps": "4"}
    if path == "edits":
        data["prompt"] = "a red circle"
    if model == "gpt-image-1":
        del data["response_format"]  # always base64
    r = httpx.post(f"{stack.base_url}/v1/images/{path}", files=files, data=data, timeout=60)
    assert r.status_code == 200, r.text
    assert _decode(r.json()["data"][0]["b64_json"]).size == size
