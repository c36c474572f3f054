"""Multipart uploads for edits and variations: limits while reading, formats by magic bytes.

Size limits are enforced as the body streams in (the Node SDK sends chunked bodies with no
Content-Length); images are identified by their first bytes, never by filename or part type
(the SDKs send `upload` / `application/octet-stream`); pixel counts are checked from the header
before any pixel is decoded.  Only the images a job uses are ever decoded, and each one is made
what the model expects: the first frame (phones' MPO JPEGs), upright (EXIF orientation) and sRGB
(an embedded ICC profile is applied, not dropped).
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError
from starlette.datastructures import UploadFile

from core.errors import bad_request
from core.storage import sniff
from service.bodies import read_limited

MAX_IMAGES = 16


@dataclass
class Uploaded:
    fields: dict[str, str]
    images: list[bytes]
    mask: bytes | None


async def read_upload(request: Request, max_total: int, max_file: int) -> Uploaded:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise bad_request("This endpoint expects multipart/form-data with an 'image' file "
                          "(edits also take JSON with 'images').", None, "invalid_content_type")
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


# What Pillow may call a file whose first bytes say `sniff`'s format: phones write MPO (a JPEG
# followed by more JPEGs, e.g. a depth map); its first frame is the photo.
PILLOW_FORMATS = {"png": {"PNG"}, "jpeg": {"JPEG", "MPO"}, "webp": {"WEBP"}}
# How to turn each EXIF orientation upright: the table ImageOps.exif_transpose uses.
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Header:
    """What an image's header says, before any pixel is decoded."""

    size: tuple[int, int]  # upright: as the image is shown, after its EXIF orientation
    alpha: bool

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


def check_format(data: bytes, param: str) -> str:
    fmt = sniff(data)
    if fmt is None:
        raise bad_request(f"Invalid '{param}': unsupported file format; send a PNG, JPEG or "
                          "WebP image.", param, "invalid_image_format")
    return fmt


@contextlib.contextmanager
def _readable(param: str) -> Iterator[None]:
    """Pillow's many ways of failing on a bad file (and its bomb warning) as one 400."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (at the same limit) fires inside Image.open, before our check.
        raise bad_request(f"Invalid '{param}': its header declares more pixels than allowed.",
                          param, "image_too_large") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise bad_request(f"Invalid '{param}': the image could not be decoded (truncated or "
                          "corrupt).", param, "invalid_image") from exc


def _open(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """The image with only its header read; call inside `_readable`."""
    fmt = check_format(data, param)
    image = Image.open(io.BytesIO(data))
    w, h = image.size  # from the header: nothing decoded yet
    if w * h > max_pixels or w < 1 or h < 1 or max(w, h) > 16384:
        raise bad_request(f"Invalid '{param}': {w}x{h} is larger than allowed ({max_pixels} "
                          "pixels, 16384 per side).", param, "image_too_large")
    if image.format not in PILLOW_FORMATS[fmt]:
        raise bad_request(f"Invalid '{param}': the file's content does not match its format.",
                          param, "invalid_image_format")
    return image


def _orientation(image: Image.Image) -> int:
    # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixel
    # data; only metadata read with the header counts, so the checked size is the decoded one.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if value in UPRIGHT else 1


def probe(data: bytes, param: str, max_pixels: int) -> Header:
    """Size and alpha from the header alone, or a 400 naming `param`."""
    with _readable(param):
        image = _open(data, param, max_pixels)
        w, h = image.size
        return Header((h, w) if _orientation(image) in (5, 6, 7, 8) else (w, h),
                      has_alpha(image))


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """The pixels converted from the embedded profile to sRGB, which is what models are trained
    on; a profile that cannot be read or applied leaves them as they are (browsers do the same)."""
    if image.mode == "P":
        image = image.convert("RGBA" if has_alpha(image) else "RGB")
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if image.mode in ("RGB", "RGBA"):  # in place: no second copy of a large image
            ImageCms.profileToProfile(image, source, _srgb(), inPlace=True)
            return image
        if image.mode in ("L", "CMYK"):
            out = ImageCms.profileToProfile(image, source, _srgb(), outputMode="RGB")
            return out if out is not None else image
    except (OSError, ImageCms.PyCMSError):
        pass
    return image


def decode(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """A fully decoded image (first frame, upright, sRGB), or a 400 naming `param` for anything
    unsafe or unreadable."""
    with _readable(param):
        image = _open(data, param, max_pixels)
        orientation = _orientation(image)  # before load(): the same rule as `probe`
        image.load()
        if image.mode.startswith("I"):  # 16-bit greyscale PNG: convert() would clip it to white
            image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
        icc = image.info.get("icc_profile")
        if icc:
            image = _to_srgb(image, icc)
        if orientation in UPRIGHT:
            image = image.transpose(UPRIGHT[orientation])
    # The pixels are upright sRGB now; metadata saying otherwise would be applied twice.
    for stale in ("exif", "icc_profile"):
        image.info.pop(stale, None)
    return image


def prepare(data: bytes, param: str, max_pixels: int, need_transparency: bool = False) -> bytes:
    """Decode one upload and re-encode it as the PNG the worker reads; the decoded image is
    dropped before this returns, so callers bound memory by bounding concurrent calls."""
    image = decode(data, param, max_pixels)
    if need_transparency and not has_transparent_pixels(image):
        raise bad_request(f"Invalid '{param}': without a mask the image must have transparent "
                          "pixels, which mark the area to edit.", param, "invalid_image")
    return to_png(image)


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and
                                                   "transparency" in image.info)


def has_transparent_pixels(image: Image.Image) -> bool:
    if not has_alpha(image):
        return False
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")  # no copy when it is
    return rgba.getchannel("A").getextrema()[0] == 0


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    # RGB and RGBA are stored as they are (a conversion would copy the whole image); any other
    # mode, or a colour-key transparency, becomes RGBA, which the worker reads anyway.
    keep = image.mode in ("RGB", "RGBA") and "transparency" not in image.info
    (image if keep else image.convert("RGBA")).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
