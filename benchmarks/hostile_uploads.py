"""Hostile uploads against a private stack (Redis, one worker, the gateway): one table row each.

    .venv/bin/python -m benchmarks.hostile_uploads

Prints the markdown table of docs/reliability.md ("Hostile inputs, round two"): what was sent,
the status and the error code (or what a 200 stored).  Every request is made with httpx, not
the SDK, so nothing is cleaned up on the way.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

Files = list[tuple[str, tuple[str, bytes, str]]]
FAST = {"model": "easel-shapes", "steps": "4", "size": "64x64", "prompt": "a red square"}


def save(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))


def with_chunks(png: bytes, extra: bytes, after_idat: bool = False) -> bytes:
    at = png.index(b"IEND") - 4 if after_idat else png.index(b"IDAT") - 4
    return png[:at] + extra + png[at:]


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


PICTURE = Image.new("RGB", (256, 256), "white")
PICTURE.paste((220, 30, 30), (10, 10, 128, 128))
GOOD = save(PICTURE)
TRUNCATED = save(Image.effect_noise((256, 256), 60).convert("RGB"))[:40_000]
ZTXT = zlib.compress(b"A" * ((1 << 20) - 16), 9)
MASK = save(Image.new("RGBA", (256, 256), (0, 0, 0, 0)))


def one(data: bytes, mask: bytes | None = None, name: str = "image") -> Files:
    files: Files = [(name, ("a.png", data, "application/octet-stream"))]
    return files + ([("mask", ("m.png", mask, "image/png"))] if mask is not None else [])


# (what is sent, endpoint, parts, extra form fields)
CASES: list[tuple[str, str, Callable[[], Files], dict[str, str]]] = [
    ("GIF bytes as `image`", "edits", lambda: one(b"GIF89a" + b"\0" * 64), {}),
    ("PNG truncated in its pixel data", "edits", lambda: one(TRUNCATED), {}),
    ("PNG header claiming 60000x60000", "edits", lambda: one(png_header(60000, 60000)), {}),
    ("PNG 4097x4097 (just over 16.7 Mpx; 50 KB)", "edits",
     lambda: one(save(Image.new("L", (4097, 4097)))), {}),
    ("PNG 1x20000 (few pixels, side > 16384)", "edits",
     lambda: one(save(Image.new("L", (1, 20000)))), {}),
    ("PNG header 0x0", "edits", lambda: one(png_header(0, 0)), {}),
    ("JPEG magic bytes, PNG body", "edits", lambda: one(b"\xff\xd8\xff" + GOOD[3:]), {}),
    ("PNG magic bytes, JPEG body", "edits",
     lambda: one(GOOD[:8] + save(PICTURE, "JPEG")[8:]), {}),
    ("WebP header claiming 16383x16383", "edits",
     lambda: one(save(Image.new("RGB", (64, 64)), "WEBP")[:20]
                 + b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (16382).to_bytes(3, "little")
                 + (16382).to_bytes(3, "little")), {}),
    ("66 KB PNG with 63 zTXt chunks of 1 MB (text bomb)", "edits",
     lambda: one(with_chunks(GOOD, b"".join(chunk(b"zTXt", b"k%d\0\0" % i + ZTXT)
                                            for i in range(63)))), {}),
    ("17 images", "edits", lambda: one(GOOD) * 17, {}),
    ("16 images, the 15 unused ones truncated", "edits",
     lambda: one(GOOD) + one(TRUNCATED) * 15, {}),
    ("16 images, an unused one a GIF", "edits",
     lambda: one(GOOD) + one(b"GIF89a" + b"\0" * 64), {}),
    ("variation with 16 images, the unused ones truncated", "variations",
     lambda: one(GOOD) + one(TRUNCATED) * 15, {}),
    ("variation with a `mask`", "variations", lambda: one(GOOD, MASK), {}),
    ("truncated image + invalid `response_format`", "edits", lambda: one(TRUNCATED),
     {"response_format": "gif"}),
    ("truncated image + unknown `model`", "edits", lambda: one(TRUNCATED),
     {"model": "no-such-model"}),
    ("mask without alpha", "edits",
     lambda: one(GOOD, save(Image.new("RGB", (256, 256)))), {}),
    ("mask of another size", "edits",
     lambda: one(GOOD, save(Image.new("RGBA", (128, 128)))), {}),
    ("MPO JPEG (phone photo, 2 frames)", "edits",
     lambda: one(save(PICTURE, "MPO", save_all=True, append_images=[PICTURE])), {}),
    ("JPEG, EXIF orientation 6, mask drawn upright", "edits",
     lambda: one(save(PICTURE.resize((128, 64)), "JPEG", exif=exif(6)),
                 save(Image.new("RGBA", (64, 128)))), {}),
    ("JPEG, EXIF orientation 6, mask drawn as stored (sideways)", "edits",
     lambda: one(save(PICTURE.resize((128, 64)), "JPEG", exif=exif(6)),
                 save(Image.new("RGBA", (128, 64)))), {}),
    ("JPEG, EXIF orientation 9 (invalid)", "edits",
     lambda: one(save(PICTURE, "JPEG", exif=exif(9))), {}),
    ("JPEG with a corrupt EXIF block", "edits",
     lambda: one(save(PICTURE, "JPEG", exif=b"Exif\0\0MM\0*\xff\xff\xff\xff")), {}),
    ("PNG with an unreadable ICC profile", "edits",
     lambda: one(save(PICTURE, icc_profile=b"junk" * 64)), {}),
    ("CMYK JPEG", "edits", lambda: one(save(PICTURE.convert("CMYK"), "JPEG")), {}),
    ("16-bit greyscale PNG", "edits", lambda: one(save(PICTURE.convert("I;16"))), {}),
    ("animated PNG, 2 frames", "edits",
     lambda: one(save(PICTURE, save_all=True, append_images=[PICTURE.rotate(90)])), {}),
    ("animated WebP, 2 frames", "edits",
     lambda: one(save(PICTURE, "WEBP", save_all=True, append_images=[PICTURE.rotate(90)])), {}),
    ("file part named `../../etc/passwd`", "edits",
     lambda: [("image", ("../../etc/passwd", GOOD, "text/plain"))], {}),
    ("unknown file part `foo`", "edits", lambda: one(GOOD) + one(GOOD, name="foo"), {}),
    ("`image` sent as a text field (mask as a file)", "edits",
     lambda: [("mask", ("m.png", MASK, "image/png"))], {"image": "x"}),
    ("JPEG, EXIF orientation 6, no mask", "edits",
     lambda: one(save(PICTURE.resize((128, 64)), "JPEG", exif=exif(6))), {}),
    ("PNG 128x64 with eXIf orientation 6 after the pixel data", "edits",
     lambda: one(with_chunks(save(PICTURE.resize((128, 64))),
                             chunk(b"eXIf", exif(6).tobytes()[6:]), after_idat=True)), {}),
]


def _row(what: str, r: httpx.Response, stored: str = "") -> str:
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    err = body.get("error") or {}
    code = err.get("code") or stored
    param = f" (`{err['param']}`)" if err.get("param") else ""
    return f"| {what} | {r.status_code} | {code}{param} |"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="easel-hostile-") as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        env = base_env(redis.url, Path(tmp))
        worker = start_worker(env, "hostile-worker")
        gateway = Gateway(env).start()
        try:
            wait_ready(gateway.base_url)
            base = gateway.base_url
            print("| input | status | code (`param`) |\n|---|---|---|")
            inputs = Path(tmp) / "files" / "inputs"
            for what, path, files, data in CASES:
                seen = set(inputs.glob("*/*.png"))
                fields = {**FAST, **data}
                if path == "variations":
                    fields.pop("prompt")
                r = httpx.post(f"{base}/v1/images/{path}", files=files(), data=fields,
                               timeout=120)
                new = sorted(set(inputs.glob("*/*.png")) - seen)
                stored = ", ".join(f"stored {p.name} {Image.open(p).size[0]}x"
                                   f"{Image.open(p).size[1]} {Image.open(p).mode}" for p in new)
                print(_row(what, r, stored), flush=True)
            r = httpx.post(f"{base}/v1/images/edits", content=b"{}", timeout=30,
                           headers={"content-type": "application/json"})
            print(_row("JSON body on /edits", r))
            before = {d.name for d in inputs.iterdir()}
            url = httpx.post(f"{base}/v1/images/edits", files=one(GOOD, MASK), data=FAST,
                             timeout=120).json()["data"][0]["url"]
            job = url.split("/files/images/")[1].split("/")[0]
            (private,) = {d.name for d in inputs.iterdir()} - before
            for key in (f"inputs/{job}/image0.png", f"inputs/{job}/mask.png",
                        f"partials/{job}/0.png", f"inputs/{private}/image0.png",
                        f"images/../inputs/{private}/image0.png",
                        f"images/%2e%2e/inputs/{private}/image0.png"):
                shown = key.replace(job, "<job id>").replace(private, "<its private id>")
                print(_row(f"GET /files/{shown}", httpx.get(f"{base}/files/{key}", timeout=10)))
        finally:
            gateway.stop()
            stop(worker)
            redis.stop()


if __name__ == "__main__":
    main()
