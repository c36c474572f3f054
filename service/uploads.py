"""Multipart uploads for edits and variations: limits while reading, formats by magic bytes.

Size limits are enforced as the body streams in (the Node SDK sends chunked bodies with no
Content-Length); images are identified by their first bytes, never by filename or part type
(the SDKs send `upload` / `application/octet-stream`); pixel counts are checked from the header
before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile

from core.errors import bad_request
from service.bodies import read_limited

MAX_IMAGES = 16


@dataclass
class Uploaded:
    fields: dict[str, str]
    images: list[bytes]
    mask: bytes | None


def sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


async def read_upload(request: Request, max_total: int, max_file: int) -> Uploaded:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise bad_request("This endpoint expects multipart/form-data with an 'image' file.",
                          None, "invalid_content_type")
    body = await read_limited(request, max_total)

    async def replay() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=MAX_IMAGES + 2, max_fields=64, max_part_size=64 * 1024)
    except Exception as exc:  # starlette raises its own 400s for malformed or excessive parts
        raise bad_request(f"Could not parse the multipart body: {getattr(exc, 'detail', exc)}",
                          None, "invalid_multipart") from exc
    fields: dict[str, str] = {}
    images: list[bytes] = []
    mask: bytes | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if len(data) > max_file:
                raise bad_request(f"'{key}' is larger than the {max_file} bytes allowed per "
                                  "file.", key.rstrip("[]"), "file_too_large")
            if key in ("image", "image[]"):
                images.append(data)
            elif key == "mask":
                mask = data
            else:
                raise bad_request(f"Unexpected file part '{key}'.", key, "unknown_parameter")
        elif key in ("image", "image[]", "mask"):
            raise bad_request(f"'{key}' must be a file upload.", key.rstrip("[]"),
                              "invalid_type")
        else:
            fields[key] = value
    if not images:
        raise bad_request("You must provide an image ('image' or 'image[]').", "image",
                          "missing_required_parameter")
    if len(images) > MAX_IMAGES:
        raise bad_request(f"At most {MAX_IMAGES} images are allowed.", "image", "too_many_images")
    return Uploaded(fields, images, mask)


def decode(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """A fully decoded image, or a 400 naming `param` for anything unsafe or unreadable."""
    fmt = sniff(data)
    if fmt is None:
        raise bad_request(f"Invalid '{param}': unsupported file format; send a PNG, JPEG or "
                          "WebP image.", param, "invalid_image_format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            w, h = image.size  # from the header: nothing decoded yet
            if w * h > max_pixels or w < 1 or h < 1 or max(w, h) > 16384:
                raise bad_request(f"Invalid '{param}': {w}x{h} is more than the {max_pixels} "
                                  "pixels allowed.", param, "image_too_large")
            if (image.format or "").lower() != fmt:
                raise bad_request(f"Invalid '{param}': the file's content does not match its "
                                  "format.", param, "invalid_image_format")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bad_request(f"Invalid '{param}': the image could not be decoded (truncated or "
                          "corrupt).", param, "invalid_image") from exc
    return image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and
                                                   "transparency" in image.info)


def has_transparent_pixels(image: Image.Image) -> bool:
    return has_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] == 0


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGBA").save(buf, "PNG", compress_level=1)
    return buf.getvalue()
