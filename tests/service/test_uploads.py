"""Uploaded images are decoded the way a viewer shows them: first frame, upright, sRGB."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from service import uploads

LIMIT = 4096 * 4096


def _save(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _linear_rgb_icc() -> bytes:
    """An ICC v2 display profile with sRGB's primaries and a linear (gamma 1.0) curve: far
    enough from sRGB that ignoring it shows (linear mid-grey 128 is sRGB 188)."""
    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in (x, y, z))

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0100)  # one entry: gamma 1.0
    desc = b"desc\0\0\0\0" + struct.pack(">I", 7) + b"linear\0" + b"\0" * 78
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 28
              + xyz(0.9642, 1.0, 0.8249)[8:])
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + data


def test_mpo_from_a_phone_is_accepted_as_its_first_frame() -> None:
    first, second = Image.new("RGB", (64, 32), "red"), Image.new("RGB", (64, 32), "blue")
    data = _save(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"  # what Pillow calls it
    r, _, b = uploads.decode(data, "image", LIMIT).convert("RGB").getpixel((10, 10))
    assert r > 200 and b < 50  # the first frame, not the second
    assert uploads.probe(data, "image", LIMIT).size == (64, 32)


def test_exif_orientation_is_applied_before_the_size_is_checked() -> None:
    stored = Image.new("RGB", (64, 32), "white")  # landscape as stored...
    stored.paste((255, 0, 0), (0, 0, 16, 16))  # ...with a red mark at its top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # ...shown rotated 90 degrees clockwise: a portrait photo
    data = _save(stored, "JPEG", exif=exif, quality=95)
    upright = uploads.decode(data, "image", LIMIT)
    assert upright.size == (32, 64)
    r, g, _ = upright.getpixel((28, 4))  # the mark is at the top-right now
    assert r > 200 and g < 60
    assert upright.getpixel((4, 4))[1] > 200  # and the top-left is white
    # The header alone gives the same upright size: what the size and mask checks see.
    assert uploads.probe(data, "image", LIMIT).size == (32, 64)
    stored_png = Image.open(io.BytesIO(uploads.prepare(data, "image", LIMIT)))
    assert stored_png.size == (32, 64) and stored_png.getexif().get(0x0112) is None


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "RGB")])
def test_icc_profile_is_converted_to_srgb(fmt: str, mode: str) -> None:
    grey = Image.new(mode, (16, 16), (128, 128, 128, 200)[: len(mode)])
    tagged = uploads.decode(_save(grey, fmt, icc_profile=_linear_rgb_icc()), "image", LIMIT)
    plain = uploads.decode(_save(grey, fmt), "image", LIMIT)
    assert abs(plain.getpixel((8, 8))[0] - 128) <= 2  # no profile: sRGB already
    pixel = tagged.getpixel((8, 8))
    assert all(180 <= c <= 196 for c in pixel[:3]), pixel  # linear 0.5 is sRGB ~188
    if mode == "RGBA":
        assert pixel[3] == 200  # alpha (the edit area) is untouched
    assert "icc_profile" not in tagged.info  # not applied a second time downstream


def test_unreadable_icc_profile_keeps_the_pixels() -> None:
    data = _save(Image.new("RGB", (8, 8), (128, 128, 128)), "PNG", icc_profile=b"not a profile")
    assert uploads.decode(data, "image", LIMIT).getpixel((0, 0)) == (128, 128, 128)



def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    data = _save(Image.new("I;16", (8, 8), 40000), "PNG")  # 61% grey in 16 bits
    grey = uploads.decode(data, "image", LIMIT).convert("L").getpixel((0, 0))
    assert 150 <= grey <= 160  # not 255: the old conversion clipped every value above 255
