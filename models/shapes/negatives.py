"""Hard negatives for the contrastive scorer: captions that are almost true, and twin scenes.

A *claim* is a `Scene` read as what a caption asserts (its objects' coordinates are ignored).
`holds` judges a claim against a scene's objects exactly as the checker judges an image, so the
scorer's training never calls a true caption a negative.  Negatives are the near misses that
DALL·E-style rerankers must tell apart: another colour, another shape, swapped colours, the
opposite position or relation, one object more or less.  Nothing here names a held-out
colour-shape pair unless asked to (evaluation only).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from models.shapes.world import (
    _DIAMETER,
    COLOURS,
    COUNT_WORDS,
    HELD_OUT,
    SHAPES,
    Obj,
    Scene,
    _free,
    _place,
    position_holds,
    relation_holds,
)

OPPOSITE = {"on the left": "on the right", "on the right": "on the left",
            "at the top": "at the bottom", "at the bottom": "at the top",
            "to the left of": "to the right of", "to the right of": "to the left of",
            "above": "below", "below": "above"}


def caption_of(kind: str, objects: Sequence[Obj], position: str | None = None,
               relation: str | None = None) -> str:
    """The grammar's caption for a claim."""
    o = objects[0]
    if kind == "count":
        return f"{COUNT_WORDS[len(objects)]} {o.colour} {o.shape}s"
    if kind == "pair":
        b = objects[1]
        return f"a {o.colour} {o.shape} {relation} a {b.colour} {b.shape}"
    return f"a {o.colour} {o.shape}" + (f" {position}" if position else "")


def claim(kind: str, objects: Sequence[Obj], position: str | None = None,
          relation: str | None = None) -> Scene:
    return Scene(caption_of(kind, objects, position, relation), kind, tuple(objects),
                 position=position, relation=relation)


def holds(c: Scene, objects: Sequence[Obj]) -> bool:
    """Whether claim `c` is true of a picture of `objects` (the checker's rules)."""
    want: dict[str, list[str]] = {}
    for o in c.objects:
        want.setdefault(o.colour, []).append(o.shape)
    got: dict[str, list[Obj]] = {}
    for o in objects:
        got.setdefault(o.colour, []).append(o)
    if set(want) != set(got):
        return False
    if any(sorted(want[k]) != sorted(o.shape for o in got[k]) for k in want):
        return False
    if c.position is not None:
        return len(objects) == 1 and position_holds(c.position, (objects[0].cx, objects[0].cy))
    if c.relation is not None:
        (a,), (b,) = got[c.objects[0].colour], got[c.objects[1].colour]
        return relation_holds(c.relation, (a.cx, a.cy), (b.cx, b.cy))
    return True


def signature(objects: Sequence[Obj]) -> tuple[tuple[str, str], ...]:
    """What a claim needs of a picture before geometry: its colour-shape multiset."""
    return tuple(sorted((o.colour, o.shape) for o in objects))


def _ok(colour: str, shape: str, held_out_ok: bool) -> bool:
    return held_out_ok or (colour, shape) not in HELD_OUT


def _recoloured(objects: Sequence[Obj], i: int, held_out_ok: bool,
                same_colour: bool = False) -> list[tuple[Obj, ...]]:
    """Every variant with object i (all objects when `same_colour`) in another colour."""
    out = []
    others = {o.colour for j, o in enumerate(objects) if j != i and not same_colour}
    for c in COLOURS:
        if c == objects[i].colour or c in others or not _ok(c, objects[i].shape, held_out_ok):
            continue
        out.append(tuple(replace(o, colour=c) if same_colour or j == i else o
                         for j, o in enumerate(objects)))
    return out


def _reshaped(objects: Sequence[Obj], i: int, held_out_ok: bool,
              same_shape: bool = False) -> list[tuple[Obj, ...]]:
    out = []
    for s in SHAPES:
        if s == objects[i].shape or not _ok(objects[i].colour, s, held_out_ok):
            continue
        out.append(tuple(replace(o, shape=s) if same_shape or j == i else o
                         for j, o in enumerate(objects)))
    return out


def negative_claims(scene: Scene, held_out_ok: bool = False) -> list[Scene]:
    """Every near-miss claim about `scene` (false of its picture), in a fixed order."""
    objs, kind = scene.objects, scene.kind
    out: list[Scene] = []
    if kind in ("single", "position"):
        variants = _recoloured(objs, 0, held_out_ok) + _reshaped(objs, 0, held_out_ok)
        out += [claim(kind, v, scene.position) for v in variants]
        if scene.position:
            out.append(claim(kind, objs, OPPOSITE[scene.position]))
        if _ok(objs[0].colour, objs[0].shape, held_out_ok):
            out.append(claim("count", objs * 2))
    elif kind == "count":
        same = [*_recoloured(objs, 0, held_out_ok, same_colour=True),
                *_reshaped(objs, 0, held_out_ok, same_shape=True)]
        out += [claim("count", v) for v in same]
        out += [claim("count", (objs[0],) * k) for k in COUNT_WORDS if k != len(objs)]
        out.append(claim("single", objs[:1]))
    else:  # pair
        rel = scene.relation
        a, b = objs
        out.append(claim("pair", objs, relation=OPPOSITE[rel or ""]))
        swapped = (replace(a, colour=b.colour), replace(b, colour=a.colour))
        if all(_ok(o.colour, o.shape, held_out_ok) for o in swapped):
            out.append(claim("pair", swapped, relation=rel))
        if a.shape != b.shape:
            shapes = (replace(a, shape=b.shape), replace(b, shape=a.shape))
            if all(_ok(o.colour, o.shape, held_out_ok) for o in shapes):
                out.append(claim("pair", shapes, relation=rel))
        for i in (0, 1):
            variants = _recoloured(objs, i, held_out_ok) + _reshaped(objs, i, held_out_ok)
            out += [claim("pair", v, relation=rel) for v in variants]
        out += [claim("single", (o,)) for o in objs if _ok(o.colour, o.shape, held_out_ok)]
    seen: dict[str, Scene] = {}
    for c in out:
        if not holds(c, objs):
            seen.setdefault(c.caption, c)
    return list(seen.values())


def _inside(o: Obj) -> bool:
    r = o.d / 2 + 0.02
    return r <= o.cx <= 1 - r and r <= o.cy <= 1 - r


def _moved(rng: random.Random, scene: Scene) -> Scene | None:
    """The same objects where the caption is false: mirrored to the other half, positions of a
    pair swapped, or one object more or fewer."""
    objs = scene.objects
    if scene.position:
        o = objs[0]
        flip = replace(o, cx=1 - o.cx) if "left" in scene.position or "right" in scene.position \
            else replace(o, cy=1 - o.cy)
        return claim("position", (flip,), OPPOSITE[scene.position])
    if scene.relation:
        a, b = objs
        a2, b2 = replace(a, cx=b.cx, cy=b.cy), replace(b, cx=a.cx, cy=a.cy)
        if _inside(a2) and _inside(b2) and _free(a2, [b2]):
            return claim("pair", (a2, b2), relation=OPPOSITE[scene.relation])
        return None
    if scene.kind == "count":
        if len(objs) > 2 and rng.random() < 0.5:
            return claim("count", objs[:-1])
        if len(objs) == 2 and rng.random() < 0.3:
            return claim("single", objs[:1])
        if len(objs) < 4:
            o = objs[0]
            extra = _place(rng, o.d * rng.uniform(0.9, 1.1), list(objs), o.colour, o.shape)
            return claim("count", (*objs, extra)) if extra else None
        return claim("count", objs[:-1])
    lo, hi = _DIAMETER["pair"]  # a single object gains a second: a pair of another colour
    o = objs[0]
    colours = [c for c in COLOURS if c != o.colour]
    c2, s2 = rng.choice(colours), rng.choice(SHAPES)
    if (c2, s2) in HELD_OUT:
        return None
    extra = _place(rng, rng.uniform(lo, hi), [o], c2, s2)
    if extra is None:
        return None
    horizontal = abs(o.cx - extra.cx) >= abs(o.cy - extra.cy)
    rel = ("to the left of" if o.cx < extra.cx else "to the right of") if horizontal else (
        "above" if o.cy < extra.cy else "below")
    return claim("pair", (o, extra), relation=rel)


def twin(rng: random.Random, scene: Scene) -> Scene | None:
    """A scene one edit away from `scene` whose own caption is false of `scene`'s picture:
    a hard negative image for `scene`'s caption (and `scene` one for the twin's). Never a
    held-out pair. None when the chosen edit does not fit the canvas."""
    objs, kind = scene.objects, scene.kind
    edit = rng.choice(("colour", "shape", "move", "move"))
    result: Scene | None
    if edit == "move":
        result = _moved(rng, scene)
    else:
        i = rng.randrange(len(objs)) if kind == "pair" else 0
        whole = kind == "count"
        variants = (_recoloured(objs, i, False, same_colour=whole) if edit == "colour"
                    else _reshaped(objs, i, False, same_shape=whole))
        if not variants:
            return None
        result = claim(kind, rng.choice(variants), scene.position, scene.relation)
    if result is None or holds(result, objs) or not all(_inside(o) for o in result.objects):
        return None
    return result
