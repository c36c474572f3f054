"""The shapes world: caption grammar, palette, scene sampling and rendering.

Pure numpy + Pillow so that training, evaluation and tests share one definition of the domain
(see ``shared/shapes-world.md``).  A *scene* is a caption plus the objects that make it true;
rendering draws the scene at 4x the target resolution and box-downsamples for anti-aliased edges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 70, 230),
    "yellow": (245, 205, 0),
    "purple": (150, 40, 190),
    "cyan": (0, 200, 220),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom")
RELATIONS = ("to the left of", "to the right of", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
# Colour-shape pairs never drawn or named in training; evaluation uses them to test composition.
HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("yellow", "circle"), ("green", "square")}
)
KINDS = ("single", "position", "pair", "count")
# Diameter ranges as fractions of the canvas width, per caption kind.
_DIAMETER = {"single": (0.28, 0.50), "position": (0.28, 0.45), "pair": (0.22, 0.34),
             "count": (0.19, 0.28)}
_GAP = 0.04  # minimum free space between objects, so each stays its own connected component


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    cx: float  # centre, as a fraction of the canvas
    cy: float
    d: float  # diameter (bounding-box side), as a fraction of the canvas


@dataclass(frozen=True)
class Scene:
    caption: str
    kind: str
    objects: tuple[Obj, ...]
    # What the caption asserts beyond its objects, for the checker: a position or a relation.
    position: str | None = None
    relation: str | None = None


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the tokenizer's vocabulary)."""
    words: list[str] = ["a"]
    words += list(COLOURS) + list(SHAPES) + [s + "s" for s in SHAPES]
    for phrase in POSITIONS + RELATIONS:
        words += phrase.split()
    words += list(COUNT_WORDS.values())
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


def pairs(held_out: bool) -> list[tuple[str, str]]:
    """Colour-shape pairs in (held_out=True) or out of the held-out set."""
    return [(c, s) for c in COLOURS for s in SHAPES if ((c, s) in HELD_OUT) == held_out]


def _free(o: Obj, placed: list[Obj]) -> bool:
    return all(max(abs(o.cx - p.cx), abs(o.cy - p.cy)) > (o.d + p.d) / 2 + _GAP for p in placed)


def _place(rng: random.Random, d: float, placed: list[Obj], colour: str, shape: str,
           box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> Obj | None:
    """Rejection-sample a centre so the object is inside `box` (x0, y0, x1, y1) and free."""
    x0, y0, x1, y1 = box
    lo_x, hi_x = x0 + d / 2 + 0.02, x1 - d / 2 - 0.02
    lo_y, hi_y = y0 + d / 2 + 0.02, y1 - d / 2 - 0.02
    if lo_x > hi_x or lo_y > hi_y:
        return None
    for _ in range(60):
        o = Obj(colour, shape, rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y), d)
        if _free(o, placed):
            return o
    return None


_HALF = {"on the left": (0.0, 0.0, 0.5, 1.0), "on the right": (0.5, 0.0, 1.0, 1.0),
         "at the top": (0.0, 0.0, 1.0, 0.5), "at the bottom": (0.0, 0.5, 1.0, 1.0)}


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """`a` {relation} `b`, judged on centres (image y grows downwards)."""
    (ax, ay), (bx, by) = a, b
    return {"to the left of": ax < bx, "to the right of": ax > bx,
            "above": ay < by, "below": ay > by}[relation]


def position_holds(position: str, c: tuple[float, float]) -> bool:
    x, y = c
    return {"on the left": x < 0.5, "on the right": x > 0.5,
            "at the top": y < 0.5, "at the bottom": y > 0.5}[position]


def sample_scene(rng: random.Random, kind: str, held_out: bool = False) -> Scene:
    """A random scene of `kind`; held_out=True puts a held-out pair in it (evaluation only)."""
    allowed = pairs(held_out)
    anyp = pairs(False) + (pairs(True) if held_out else [])
    while True:
        lo, hi = _DIAMETER[kind]
        if kind in ("single", "position"):
            c, s = rng.choice(allowed)
            pos = rng.choice(POSITIONS) if kind == "position" else None
            o = _place(rng, rng.uniform(lo, hi), [], c, s, _HALF[pos] if pos else (0, 0, 1, 1))
            if o is None:
                continue
            cap = f"a {c} {s}" + (f" {pos}" if pos else "")
            return Scene(cap, kind, (o,), position=pos)
        if kind == "count":
            c, s = rng.choice(allowed)
            k = rng.choice(tuple(COUNT_WORDS))
            placed: list[Obj] = []
            d = rng.uniform(lo, hi)
            for _ in range(k):
                o = _place(rng, d * rng.uniform(0.9, 1.1), placed, c, s)
                if o is None:
                    break
                placed.append(o)
            if len(placed) == k:
                return Scene(f"{COUNT_WORDS[k]} {c} {s}s", kind, tuple(placed))
            continue
        # pair: the first object must be held out when asked; colours differ.
        c1, s1 = rng.choice(allowed)
        c2, s2 = rng.choice([p for p in anyp if p[0] != c1])
        rel = rng.choice(RELATIONS)
        a = _place(rng, rng.uniform(lo, hi), [], c1, s1)
        if a is None:
            continue
        b = _place(rng, rng.uniform(lo, hi), [a], c2, s2)
        # Keep the stated axis clearly dominant so training pictures are unambiguous.
        if b is None or not relation_holds(rel, (a.cx, a.cy), (b.cx, b.cy)):
            continue
        dx, dy = abs(a.cx - b.cx), abs(a.cy - b.cy)
        horizontal = rel in ("to the left of", "to the right of")
        if (horizontal and dx < max(dy, 0.2)) or (not horizontal and dy < max(dx, 0.2)):
            continue
        return Scene(f"a {c1} {s1} {rel} a {c2} {s2}", kind, (a, b), relation=rel)


def render(scene: Scene, size: int = 64, supersample: int = 4,
           outline: float = 0.0) -> Image.Image:
    """Draw the scene on white at `size` px, anti-aliased by drawing large and downsampling.

    `outline`: draw every shape as an outline this many output pixels wide, white inside (the
    style the shipped LoRA adapter learns, models/shapes/train_lora.py; the base model only
    draws filled shapes)."""
    big = size * supersample
    img = Image.new("RGB", (big, big), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        r = o.d * big / 2
        cx, cy = o.cx * big, o.cy * big
        colour = PALETTE[o.colour]
        paint: dict[str, Any] = {"fill": colour}
        if outline:
            paint = {"fill": (255, 255, 255), "outline": colour,
                     "width": round(outline * supersample)}
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), **paint)
        elif o.shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), **paint)
        else:
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], **paint)
    return img.resize((size, size), Image.Resampling.BOX)


# Caption-kind mix for training: counts and relations are the hard skills, so more of them.
DEFAULT_MIX = (0.15, 0.2, 0.35, 0.3)


def render_batch(seed: int, count: int, size: int = 64, mix: tuple[float, ...] = DEFAULT_MIX,
                 outline: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """`count` training images (uint8, N x size x size x 3) and captions, from `seed`."""
    rng = random.Random(seed)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    captions: list[str] = []
    for i in range(count):
        scene = sample_scene(rng, rng.choices(KINDS, weights=mix)[0])
        images[i] = np.asarray(render(scene, size, outline=outline))
        captions.append(scene.caption)
    return images, captions
