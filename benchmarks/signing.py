"""Provenance cost per image: the invisible watermark, the encoding it precedes, and the C2PA
signature (ES256, no timestamp authority, no thumbnail), each the median of N runs, for the
default 256x256 and a 1024x1024 image in PNG, JPEG and WebP.

`--quick` uses a rendered shapes scene (no model to load); the default also renders the image
with the embedded model and shows each cost as a fraction of that render ("x render").
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.encoding import model_image, scene_image
from benchmarks.report import Goal, Report, main, table
from cli.certs import init
from workers import watermark
from workers.encoding import encode
from workers.provenance import Origin, Signer

FORMATS = ("png", "jpeg", "webp")
SIZES = (256, 1024)
GOAL = 0.05  # signing at most 5% of the render of the image it signs


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(image: Image.Image, signer: Signer, repeats: int) -> list[dict[str, Any]]:
    """Per format: ms to watermark, encode and sign one image, and the bytes the manifest adds."""
    marked = watermark.embed(image, "easel")
    embed_ms = _median_ms(lambda: watermark.embed(image, "easel"), repeats)
    rows = []
    for fmt in FORMATS:
        data = encode(marked, fmt)
        origin = Origin("generate", "dall-e-3", "shapes")
        signed = signer.sign(data, fmt, origin)
        rows.append({"format": fmt, "watermark_ms": embed_ms,
                     "encode_ms": _median_ms(lambda f=fmt: encode(marked, f), repeats),
                     "sign_ms": _median_ms(lambda d=data, f=fmt, o=origin: signer.sign(d, f, o),
                                           repeats),
                     "manifest_bytes": len(signed) - len(data)})
    return rows


def run(quick: bool = False) -> Report:
    repeats = 5 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        certs = init(Path(tmp) / "certs")
        signer = Signer(certs.chain, certs.key)
        report = Report("signing: watermark + encode + C2PA signature per image "
                        f"({signer.algorithm}, offline)")
        rows, goals = [], []
        for size in SIZES:
            if quick:
                image, render_s = scene_image(size), None
            else:
                image, render_s = model_image(size)
            for r in measure(image, signer, repeats):
                row: list[Any] = [f"{size}x{size} {r['format']}", r["watermark_ms"],
                                  r["encode_ms"], r["sign_ms"], r["manifest_bytes"]]
                if render_s is not None:
                    row.append(r["sign_ms"] / 1000 / render_s)
                    goals.append(Goal(f"sign / render, {size}px {r['format']}",
                                      r["sign_ms"] / 1000 / render_s, f"<= {GOAL}",
                                      r["sign_ms"] / 1000 / render_s <= GOAL))
                rows.append(row)
        headers = ["image", "watermark ms", "encode ms", "sign ms", "manifest B"]
        if not quick:
            headers.append("sign x render")
        report.lines += table(headers, rows)
        report.goals += goals[:1] + goals[-1:]  # the smallest and the largest image
        report.notes.append("source: " + ("rendered shapes scene, upscaled" if quick else
                                          "model output, rendered at 64 px and upscaled"))
    return report


if __name__ == "__main__":
    main(run, __doc__)
