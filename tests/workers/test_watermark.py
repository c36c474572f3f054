"""The invisible watermark: found in what Easel writes and after the metadata is stripped or the
image re-encoded, never in unmarked images or under another key, and invisible."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from models.shapes.world import render, sample_scene
from workers import watermark
from workers.encoding import encode, white_to_alpha


def scene(size: int, seed: int = 1) -> Image.Image:
    """What the embedded model's outputs look like: shapes on white, 64 px upscaled."""
    picture = render(sample_scene(random.Random(seed), "pair"), 64)
    return picture.resize((size, size), Image.Resampling.LANCZOS)


def reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def recode(image: Image.Image, fmt: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, fmt, quality=quality)
    return reopen(buf.getvalue())


@pytest.mark.parametrize("size", [64, 256])
def test_a_marked_image_is_found_and_an_unmarked_one_is_not(size: int) -> None:
    source = scene(size)
    marked = watermark.embed(source, "easel")
    assert watermark.detect(marked, "easel").found
    assert watermark.detect(marked, "easel").blocks == (size // 8) ** 2
    assert not watermark.detect(source, "easel").found
    assert not watermark.detect(marked, "another key").found


def test_unmarked_scores_stay_far_below_the_threshold() -> None:
    scores = [watermark.detect(scene(128, seed), f"key{seed}").score for seed in range(20)]
    scores += [watermark.detect(Image.new("RGB", (128, 128), c), "easel").score
               for c in ("white", "black", (120, 30, 200))]
    assert max(scores) < watermark.THRESHOLD / 2, scores


def test_it_is_invisible() -> None:
    source = scene(256)
    marked = watermark.embed(source, "easel")
    diff = np.asarray(marked, float) - np.asarray(source, float)
    psnr = 10 * np.log10(255**2 / (diff**2).mean())
    assert psnr > 42 and np.abs(diff).max() <= 12


@pytest.mark.parametrize(("fmt", "quality"), [("JPEG", 90), ("JPEG", 80), ("WEBP", 90)])
def test_it_survives_metadata_stripping_and_reencoding(fmt: str, quality: int) -> None:
    marked = watermark.embed(scene(256), "easel")
    stripped = reopen(encode(marked, "png"))  # a plain re-save keeps no metadata
    assert watermark.detect(stripped, "easel").found
    assert watermark.detect(recode(stripped, fmt, quality), "easel").found


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_easels_own_encodings_keep_it(fmt: str) -> None:
    marked = watermark.embed(scene(256), "easel")
    assert watermark.detect(reopen(encode(marked, fmt)), "easel").found


def test_transparent_images_keep_their_alpha() -> None:
    source = white_to_alpha(scene(128))
    marked = watermark.embed(source, "easel")
    assert marked.mode == "RGBA"
    assert marked.getchannel("A").tobytes() == source.getchannel("A").tobytes()
    assert watermark.detect(reopen(encode(marked, "png")), "easel").found


def test_images_smaller_than_a_block_are_left_alone() -> None:
    tiny = Image.new("RGB", (4, 4), "white")
    assert watermark.embed(tiny, "easel") is tiny
    assert watermark.detect(tiny, "easel").blocks == 0
