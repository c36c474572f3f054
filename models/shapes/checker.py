"""Automatic judge of a generated image against a shapes-world scene.

Nearest-palette segmentation (white included), connected components per colour, shape from the
component's fill ratio in its bounding box (square ~1, circle ~0.79, triangle ~0.5), position and
relations from component centres.  Works at any resolution: thresholds are fractions of the area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from models.shapes.world import PALETTE, Scene, position_holds, relation_holds

_NAMES = ("white", *PALETTE)
_COLOURS = np.array([(255, 255, 255), *PALETTE.values()], dtype=np.float32)
# Components smaller than this fraction of the image are edge fringes or speckle, not objects.
_MIN_AREA_FRACTION = 0.004
# Anti-aliased edges between a colour and white land on another palette colour as thin lines;
# a component whose mean thickness (area / longest bbox side) is below this fraction is a fringe.
_MIN_THICKNESS_FRACTION = 0.03


@dataclass(frozen=True)
class Found:
    colour: str
    shape: str
    cx: float
    cy: float
    area: float  # fraction of the image


def classify_shape(fill: float) -> str:
    if fill > 0.9:
        return "square"
    if fill > 0.64:
        return "circle"
    return "triangle"


def segment(image: Image.Image) -> list[Found]:
    """The objects in an image: one per connected component of a non-white palette colour."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w, _ = rgb.shape
    dist = ((rgb[:, :, None, :] - _COLOURS[None, None]) ** 2).sum(-1)
    labels = dist.argmin(-1)
    found: list[Found] = []
    for idx in range(1, len(_NAMES)):
        comp, n = ndimage.label(labels == idx)
        for k in range(1, n + 1):
            ys, xs = np.nonzero(comp == k)
            if len(ys) < _MIN_AREA_FRACTION * h * w:
                continue
            bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            if len(ys) / max(bh, bw) < _MIN_THICKNESS_FRACTION * min(h, w):
                continue
            fill = len(ys) / float(bh * bw)
            found.append(Found(_NAMES[idx], classify_shape(fill), (xs.mean() + 0.5) / w,
                               (ys.mean() + 0.5) / h, len(ys) / float(h * w)))
    return found


def check(image: Image.Image, scene: Scene) -> bool:
    """True when colours, counts per colour, every shape and the stated spatial claim are right."""
    found = segment(image)
    want: dict[str, list[str]] = {}
    for o in scene.objects:
        want.setdefault(o.colour, []).append(o.shape)
    got: dict[str, list[Found]] = {}
    for f in found:
        got.setdefault(f.colour, []).append(f)
    if set(got) != set(want):
        return False
    for colour, shapes in want.items():
        objs = got[colour]
        if sorted(f.shape for f in objs) != sorted(shapes):
            return False
    if scene.position is not None:
        (only,) = found
        return position_holds(scene.position, (only.cx, only.cy))
    if scene.relation is not None:
        a, b = scene.objects
        (fa,), (fb,) = got[a.colour], got[b.colour]
        return relation_holds(scene.relation, (fa.cx, fa.cy), (fb.cx, fb.cy))
    return True


def hollowness(image: Image.Image) -> float:
    """How hollow the drawn shapes are: the white share of the area the shapes enclose (their
    coloured pixels with the holes filled). ~0 for the base model's filled shapes; outlined
    shapes (the shipped `outline` LoRA adapter) score well above. 0 for a blank image."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1) > 60) | (rgb.max(axis=-1) < 160)
    enclosed = ndimage.binary_fill_holes(coloured)
    area = int(enclosed.sum())
    return 0.0 if area == 0 else 1.0 - int(coloured.sum()) / area
