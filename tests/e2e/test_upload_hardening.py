"""Uploads through the real stack: what is decoded, what stays private, what photos look like.

Phones send MPO JPEGs with an EXIF orientation; OpenAI clients may send up to 16 images, and
Easel's pipelines use one: extra images are a 400 unless the operator chose to render the first
(EASEL_EXTRA_IMAGES=first).  Only what a job uses is decoded, and inputs and streaming previews
are stored under an id of their own that `/files` never serves.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Stack
from tests.support import Gateway, wait_ready

FAST = {"model": "easel-shapes", "steps": "4", "size": "64x64"}


def _save(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _picture(size: tuple[int, int] = (256, 256)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.paste((220, 30, 30), (10, 10, size[0] // 2, size[1] // 2))
    return image


def _truncated(size: tuple[int, int] = (256, 256)) -> bytes:
    """A PNG whose header reads fine and whose pixels cannot be decoded."""
    data = _save(Image.effect_noise(size, 60).convert("RGB"))
    return data[: len(data) * 2 // 3]


def _post(stack: Stack, path: str, images: list[bytes], mask: bytes | None = None,
          base_url: str = "", **data: str) -> httpx.Response:
    files = [("image[]", (f"{i}.png", b, "application/octet-stream"))
             for i, b in enumerate(images)]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    prompt = {"prompt": "a red square"} if path == "edits" else {}  # variations take none
    fields = {**FAST, **prompt, **data}
    return httpx.post(f"{base_url or stack.base_url}/v1/images/{path}", files=files, data=fields,
                      timeout=60)


def _dirs(stack: Stack, prefix: str) -> set[str]:
    root = stack.data / "files" / prefix
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.fixture(scope="module")
def first_only(stack: Stack) -> Iterator[Gateway]:
    """A second gateway on the same Redis and worker, configured to render the first image."""
    gateway = Gateway(dict(stack.env, EASEL_EXTRA_IMAGES="first")).start()
    wait_ready(gateway.base_url)
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("path", ["edits", "variations"])
def test_images_beyond_the_first_are_refused_by_default(stack: Stack, path: str) -> None:
    r = _post(stack, path, [_save(_picture())] * 2)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("image", "too_many_images")
    assert "EASEL_EXTRA_IMAGES" in error["message"]


@pytest.mark.parametrize("path", ["edits", "variations"])
def test_first_image_only_when_configured_the_rest_never_decoded(
        stack: Stack, first_only: Gateway, path: str) -> None:
    before = _dirs(stack, "inputs")
    r = _post(stack, path, [_save(_picture())] + [_truncated()] * 15,
              base_url=first_only.base_url)
    assert r.status_code == 200, r.text
    (new,) = _dirs(stack, "inputs") - before
    assert [p.name for p in (stack.data / "files" / "inputs" / new).iterdir()] == ["image0.png"]


@pytest.mark.parametrize("field,value", [("response_format", "gif"), ("model", "no-such-model"),
                                         ("size", "13x13")])
def test_fields_and_model_are_checked_before_the_image_is_decoded(stack: Stack, field: str,
                                                                  value: str) -> None:
    r = _post(stack, "edits", [_truncated()], **{field: value})
    assert r.status_code in (400, 404), r.text
    assert r.json()["error"]["param"] == field  # not "image": its pixels were never read


def test_variations_take_no_mask(stack: Stack) -> None:
    mask = _save(Image.new("RGBA", (256, 256)))
    r = _post(stack, "variations", [_save(_picture())], mask)
    assert r.status_code == 400 and r.json()["error"]["param"] == "mask", r.text


def test_phone_mpo_jpeg_is_edited(stack: Stack) -> None:
    photo = _save(_picture(), "MPO", save_all=True, append_images=[_picture().rotate(90)])
    r = _post(stack, "edits", [photo])
    assert r.status_code == 200, r.text


def test_exif_portrait_is_edited_upright(stack: Stack) -> None:
    """A portrait photo stored landscape plus orientation 6: its mask is drawn upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = _save(_picture((128, 64)), "JPEG", exif=exif)
    mask = _save(Image.new("RGBA", (64, 128), (0, 0, 0, 0)))  # upright: portrait
    r = _post(stack, "edits", [photo], mask, size="64x64")
    assert r.status_code == 200, r.text


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_png_text_bomb_is_refused_cheaply(stack: Stack) -> None:
    """63 zTXt chunks of 1 MB each, 66 KB on the wire: Pillow inflates them with the header."""
    png = _save(_picture())
    at = png.index(b"IDAT") - 4
    text = zlib.compress(b"A" * ((1 << 20) - 16), 9)  # just under Pillow's 1 MB per chunk
    bomb = png[:at] + b"".join(_chunk(b"zTXt", b"k%d\0\0" % i + text) for i in range(63))
    r = _post(stack, "edits", [bomb + png[at:]])
    assert r.status_code == 400 and r.json()["error"]["param"] == "image", r.text


def _files(stack: Stack, key: str) -> int:
    return httpx.get(f"{stack.base_url}/files/{key}", timeout=10).status_code


def test_an_edits_input_is_not_reachable_from_its_result_url(stack: Stack) -> None:
    before = _dirs(stack, "inputs")
    mask = _save(Image.new("RGBA", (256, 256), (0, 0, 0, 0)))
    r = _post(stack, "edits", [_save(_picture())], mask, response_format="url")
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert httpx.get(url, timeout=10).status_code == 200  # the result itself is served
    job_id = url.split("/files/images/")[1].split("/")[0]
    for guess in ("image0.png", "mask.png", "image1.png"):
        assert _files(stack, f"inputs/{job_id}/{guess}") == 404
    (private,) = _dirs(stack, "inputs") - before
    assert private != job_id
    for name in ("image0.png", "mask.png"):  # stored, and not served even by its exact key
        assert (stack.data / "files" / "inputs" / private / name).is_file()
        assert _files(stack, f"inputs/{private}/{name}") == 404


def test_streamed_previews_are_not_reachable(stack: Stack) -> None:
    before = _dirs(stack, "partials")
    mask = _save(Image.new("RGBA", (256, 256), (0, 0, 0, 0)))
    r = _post(stack, "edits", [_save(_picture())], mask, stream="true", partial_images="1",
              size="256x256")
    assert r.status_code == 200 and "partial_image" in r.text, r.text
    (private,) = _dirs(stack, "partials") - before
    assert private not in _dirs(stack, "images")  # not the job id of any result
    preview: Path = stack.data / "files" / "partials" / private / "0.png"
    assert preview.is_file()
    assert _files(stack, f"partials/{private}/0.png") == 404
