"""Worst-case uploads against a real gateway process: what a burst of them costs in memory.

The gateway sees a fake worker heartbeat and nothing ever renders, so an admitted upload is
decoded, stored and enqueued, then answered 504 after EASEL_REQUEST_TIMEOUT_SECONDS: the whole
gateway side of an edit runs, and nothing else uses memory in that process.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image, ImageDraw
from redis import Redis

from core import liveness
from tests.support import Gateway, RedisServer, base_env

SIDE = 4096  # the largest image allowed by default (EASEL_MAX_IMAGE_PIXELS)
BURST = 10  # requests at once, each with 16 images (the most read_upload accepts)
CEILING_MB = 400  # docs/reliability.md: measured 271-291 MB (before: 10,396 MB)
KILL_MB = 2500  # unfixed code reaches gigabytes: stop it before it hurts the shared machine
QUEUE_KEY = "rq:queue:easel:shapes"


@dataclass
class Rig:
    gateway: Gateway
    redis: Redis
    files: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    server = RedisServer(tmp_path_factory.mktemp("upload-redis")).start()
    redis = Redis.from_url(server.url)
    liveness.beat(redis, "never-renders", ["easel:shapes"], ttl_seconds=3600)
    data = tmp_path_factory.mktemp("upload-data")
    # The request cap between one and two full-size images: an image alone passes, an image
    # and its mask do not (the default cap admits both).
    # Extra images accepted (first one rendered): the costliest setting for a 16-image upload.
    env = base_env(server.url, data, EASEL_REQUEST_TIMEOUT_SECONDS="1",
                   EASEL_MAX_REQUEST_PIXELS=str(20_000_000), EASEL_EXTRA_IMAGES="first")
    gateway = Gateway(env).start()
    try:
        yield Rig(gateway, redis, data / "files")
    finally:
        gateway.stop()
        server.stop()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def _big_picture() -> bytes:
    """4096x4096, mostly flat so it compresses to ~70 KB: 16 of them make a ~1.2 MB request."""
    image = Image.new("RGB", (SIDE, SIDE), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for i in range(0, SIDE, 512):
        draw.ellipse((i, i, i + 400, i + 400), fill=(200, 30, 30))
    return _png(image)


def _edit(base_url: str, images: list[bytes], mask: bytes | None = None,
          **data: str) -> httpx.Response:
    files = [("image[]", (f"{i}.png", b, "image/png")) for i, b in enumerate(images)]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    return httpx.post(f"{base_url}/v1/images/edits", files=files, timeout=120,
                      data={"prompt": "a red circle", "model": "easel-shapes", **data})


def _peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the process's resident memory (exact, not sampled)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _guard(proc: psutil.Process, stop: threading.Event) -> None:
    while not stop.wait(0.02):
        if proc.memory_info().rss > KILL_MB * 2**20:
            proc.kill()
            return


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_a_burst_of_worst_case_uploads_stays_within_a_few_hundred_mb(rig: Rig) -> None:
    picture = _big_picture()
    images = [picture] * 16
    assert 1_000_000 < sum(map(len, images)) < 1_400_000  # the audit's ~1.2 MB request
    assert rig.gateway.proc is not None
    proc = psutil.Process(rig.gateway.proc.pid)
    idle_mb = proc.memory_info().rss / 2**20
    stop = threading.Event()
    watcher = threading.Thread(target=_guard, args=(proc, stop), daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(lambda _: _edit(rig.gateway.base_url, images), range(BURST)))
        peak_mb = _peak_rss_mb(proc.pid)
    finally:
        stop.set()
        watcher.join()
        rig.redis.delete(QUEUE_KEY)  # the ten jobs nobody will render
    print(f"\ngateway RSS: idle {idle_mb:.0f} MB, peak {peak_mb:.0f} MB during {BURST} "
          f"concurrent edits of 16x {SIDE}x{SIDE} PNGs ({sum(map(len, images))} bytes each)")
    # 504: admitted, decoded, stored and enqueued, then nobody rendered it. Anything else
    # means the expensive path did not run and the figure would prove nothing.
    assert [r.status_code for r in answers] == [504] * BURST, answers[0].text
    stored = sorted(rig.files.glob("inputs/*/*.png"))
    assert [p.name for p in stored] == ["image0.png"] * BURST  # the first image only
    assert Image.open(stored[0]).size == (SIDE, SIDE)
    assert peak_mb < CEILING_MB


def test_admission_is_decided_before_any_decode(rig: Rig) -> None:
    """A full queue refuses a request before its image is decoded: this one cannot be."""
    picture = _png(Image.new("RGB", (256, 256), "white"))
    truncated = picture[: len(picture) * 2 // 3]  # the header reads fine, the pixels do not
    rig.redis.rpush(QUEUE_KEY, *[f"filler-{i}" for i in range(200)])  # EASEL_MAX_QUEUE_DEPTH
    try:
        r = _edit(rig.gateway.base_url, [truncated])
    finally:
        rig.redis.delete(QUEUE_KEY)
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full", r.text
    r = _edit(rig.gateway.base_url, [truncated])  # admitted now, so decoded: a clear 400
    assert r.status_code == 400 and r.json()["error"]["param"] == "image", r.text


def test_pixels_decoded_per_request_are_capped(rig: Rig) -> None:
    picture = _big_picture()
    mask = _png(Image.new("LA", (SIDE, SIDE), (0, 0)))
    r = _edit(rig.gateway.base_url, [picture], mask)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "image"
    assert r.json()["error"]["code"] == "image_too_large"
    assert not list(rig.files.glob("inputs/*/mask.png"))  # refused before anything was stored
