"""Encoding: milliseconds per 1024x1024 image for PNG at zlib levels 1 (what workers write), 6
(Pillow's default) and 9, JPEG and WebP at quality 90 (the workers' default), and base64 of
the level-1 PNG (what the gateway does for b64_json), with the bytes each produces.

The image is what a 1024x1024 request really encodes: a 64 px model output upscaled with
Lanczos by models.rendering.  `--quick` encodes a rendered shapes scene upscaled the same way
(no model to load); its flat colours compress better than a model's output.
"""

from __future__ import annotations

import base64
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from benchmarks.common import GUIDANCE, PROMPT, SEED0, STEPS
from benchmarks.report import Report, main, table
from workers.encoding import encode


def _png(level: int) -> Callable[[Image.Image], bytes]:
    def save(image: Image.Image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "PNG", compress_level=level)
        return buf.getvalue()

    return save


CODECS: dict[str, Callable[[Image.Image], bytes]] = {
    "png zlib 1 (workers)": _png(1),
    "png zlib 6": _png(6),
    "png zlib 9": _png(9),
    "jpeg q90": lambda im: encode(im, "jpeg"),
    "webp q90": lambda im: encode(im, "webp"),
}


def measure(image: Image.Image, repeats: int) -> list[dict[str, Any]]:
    """Median milliseconds and output bytes per codec, plus base64 of the level-1 PNG."""
    rows = []
    for name, codec in CODECS.items():
        times, data = [], b""
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = codec(image)
            times.append(time.perf_counter() - t0)
        rows.append({"name": name, "ms": statistics.median(times) * 1000, "bytes": len(data)})
    png = CODECS["png zlib 1 (workers)"](image)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        b64 = base64.b64encode(png)
        times.append(time.perf_counter() - t0)
    rows.append({"name": "base64 of png zlib 1", "ms": statistics.median(times) * 1000,
                 "bytes": len(b64)})
    return rows


def scene_image(size: int) -> Image.Image:
    from models.shapes.world import render, sample_scene

    scene = sample_scene(random.Random(SEED0), "pair")
    return render(scene, 64).resize((size, size), Image.Resampling.LANCZOS)


def model_image(size: int) -> tuple[Image.Image, float]:
    """A model output at `size` (rendered at 64 px, upscaled) and the median render seconds."""
    from benchmarks.common import load_direct
    from models.rendering import generate_prompts

    loaded = load_direct()
    times, image = [], None
    for _ in range(4):  # the first call is a warm-up, left out of the median
        t0 = time.perf_counter()
        image = generate_prompts(loaded, [PROMPT], None, [SEED0], STEPS, GUIDANCE, size, size)[0]
        times.append(time.perf_counter() - t0)
    assert image is not None
    return image, statistics.median(times[1:])


def run(quick: bool = False) -> Report:
    size = 1024
    render_s = None
    if quick:
        image, source = scene_image(size), "rendered shapes scene, upscaled 64 -> 1024"
    else:
        image, render_s = model_image(size)
        source = f"model output, {STEPS} steps at 64 px, upscaled 64 -> 1024"
    rows = measure(image, 3 if quick else 10)
    base = rows[0]["ms"]
    out = []
    for r in rows:
        row = [r["name"], r["ms"], r["ms"] / base, r["bytes"] // 1024]
        if render_s is not None:
            row.append(r["ms"] / 1000 / render_s)
        out.append(row)
    headers = ["encoding", "ms", "x png1", "KiB"]
    if render_s is not None:
        headers.append("x render")
    report = Report(f"encoding: one {size}x{size} image ({source})")
    report.lines += table(headers, out)
    if render_s is not None:
        report.notes.append(f"x render = encode time / the direct render of that image "
                            f"({render_s * 1000:.0f} ms, one thread, incl. the upscale)")
    return report


if __name__ == "__main__":
    main(run, __doc__)
