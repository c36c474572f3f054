"""An invisible watermark: the provenance layer that survives losing the image's metadata.

C2PA manifests (workers/provenance.py) live in the file's metadata, which any re-save, screenshot
or upload pipeline can drop.  This mark lives in the pixels.  Method (docs/provenance.md): the
luminance is cut into 8x8 blocks, as JPEG does; in each block the nine lowest AC coefficients of
the block's DCT (u + v from 1 to 3) are moved onto a lattice of spacing STEP shifted by a
key-derived dither (quantization index modulation).  JPEG's own quantization of those frequencies
at quality 80 and above moves a coefficient by less than a quarter of the step, so the mark
survives re-encoding; it does not survive resizing, cropping off the 8-pixel grid or rotation.

Detection needs only the key.  Each coefficient scores cos(2π (c - dither) / STEP): 1 on the
lattice, and 0 on average with variance 1/2 for an unmarked image (the dither is uniform and
independent of it).  z = sum / sqrt(K / 2) over K coefficients is about normal(0, 1) for an
unmarked image and about sqrt(2K) for a freshly marked one (K = 9 per block: 34 for 64x64,
136 for 256x256); Bernstein's inequality bounds P(z >= 6) for an unmarked image of at least
64x64 below 1e-7, so THRESHOLD is 6.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

BLOCK = 8
STEP = 10.0  # lattice spacing, in orthonormal DCT units (the scale JPEG quantizes on)
THRESHOLD = 6.0
TILE = 512  # dither is defined per absolute block position, for images up to 4096 px a side
ROUNDS = 2  # embed again after rounding and clipping to 0..255 pulled coefficients off
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# The nine lowest AC frequencies (u + v in 1..3): robust to JPEG, invisible at this step.
_POSITIONS = [(u, v) for u in range(4) for v in range(4) if 1 <= u + v <= 3]
_U = np.array([u for u, _ in _POSITIONS])
_V = np.array([v for _, v in _POSITIONS])


def _dct_rows() -> np.ndarray:
    """The first four rows of the orthonormal 8-point DCT-II matrix."""
    n = np.arange(BLOCK)
    rows = np.cos(np.pi * (2 * n[None, :] + 1) * np.arange(4)[:, None] / (2 * BLOCK))
    rows *= np.sqrt(2 / BLOCK)
    rows[0] /= np.sqrt(2)
    return rows


_D = _dct_rows().astype(np.float32)  # (4, 8)


@functools.lru_cache(maxsize=4)
def _dither(key: str) -> np.ndarray:
    """(TILE, TILE, 9) offsets in [0, 1), fixed by the key: a mark made with one key is noise
    to every other key."""
    seed = int.from_bytes(hashlib.sha256(b"easel-watermark-v1:" + key.encode()).digest()[:8],
                          "big")
    return np.random.default_rng(seed).random((TILE, TILE, len(_POSITIONS)), dtype=np.float32)


def _grid(key: str, rows: int, cols: int) -> np.ndarray:
    tile = _dither(key)
    return tile[np.arange(rows)[:, None] % TILE, np.arange(cols)[None, :] % TILE] * STEP


def _coefficients(luma: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The nine watermark coefficients of every whole 8x8 block: (rows, cols, 9)."""
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    blocks = luma[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    low = _D @ blocks.transpose(0, 2, 1, 3) @ _D.T  # (rows, cols, 4, 4): D B D^T per block
    return low[:, :, _U, _V], rows, cols


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def embed(image: Image.Image, key: str) -> Image.Image:
    """The image with the mark in its luminance (alpha, if any, is kept as it was).  Images
    smaller than one block are returned unchanged."""
    pixels = _rgb(image)
    rows, cols = pixels.shape[0] // BLOCK, pixels.shape[1] // BLOCK
    if rows == 0 or cols == 0:
        return image
    dither = _grid(key, rows, cols)
    for _ in range(ROUNDS):
        coeffs, _, _ = _coefficients(pixels @ LUMA)
        target = dither + STEP * np.round((coeffs - dither) / STEP)
        change = np.zeros((rows, cols, 4, 4), dtype=np.float32)
        change[:, :, _U, _V] = target - coeffs
        # Back to pixels: the same change of luminance on R, G and B (their weights sum to 1).
        delta = (_D.T @ change @ _D).transpose(0, 2, 1, 3)  # D^T C D per block
        pixels = pixels.copy()
        pixels[:rows * BLOCK, :cols * BLOCK] += delta.reshape(rows * BLOCK, cols * BLOCK)[..., None]
        pixels = np.clip(np.rint(pixels), 0, 255)
    marked = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        marked.putalpha(image.convert("RGBA").getchannel("A"))
    return marked


@dataclass(frozen=True)
class Detection:
    score: float  # z: about normal(0, 1) for an unmarked image
    blocks: int  # 8x8 blocks the score was computed over

    @property
    def found(self) -> bool:
        return self.score >= THRESHOLD


def detect(image: Image.Image, key: str) -> Detection:
    coeffs, rows, cols = _coefficients(_rgb(image) @ LUMA)
    if rows == 0 or cols == 0:
        return Detection(0.0, 0)
    scores = np.cos(2 * np.pi * (coeffs - _grid(key, rows, cols)) / STEP)
    return Detection(float(scores.sum() / np.sqrt(scores.size / 2)), rows * cols)
