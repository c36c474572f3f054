"""The shapes world's generator and checker agree with each other and with the shared spec."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from models.shapes.checker import check, classify_shape, segment
from models.shapes.world import (
    HELD_OUT,
    KINDS,
    Obj,
    Scene,
    render,
    render_batch,
    sample_scene,
    vocabulary,
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("held_out", [False, True])
def test_rendered_scenes_pass_the_checker(kind: str, held_out: bool) -> None:
    rng = random.Random(11)
    for _ in range(40):
        scene = sample_scene(rng, kind, held_out)
        assert check(render(scene, 64), scene), scene.caption
        big = render(scene, 64).resize((256, 256), Image.Resampling.BICUBIC)  # served sizes
        assert check(big, scene), scene.caption


def test_checker_rejects_wrong_pictures() -> None:
    scene = Scene("a red circle on the left", "position", (Obj("red", "circle", 0.25, 0.5, 0.3),),
                  position="on the left")
    wrong_side = Scene(scene.caption, "position", (Obj("red", "circle", 0.75, 0.5, 0.3),),
                       position="on the left")
    wrong_shape = Scene(scene.caption, "position", (Obj("red", "square", 0.25, 0.5, 0.3),),
                        position="on the left")
    extra = Scene(scene.caption, "position", (Obj("red", "circle", 0.25, 0.5, 0.3),
                                              Obj("blue", "square", 0.75, 0.5, 0.2)))
    assert check(render(scene), scene)
    for bad in (wrong_side, wrong_shape, extra):
        assert not check(render(bad), scene)


def test_training_data_never_contains_held_out_pairs() -> None:
    _, captions = render_batch(seed=3, count=3000)
    for caption in captions:
        for colour, shape in HELD_OUT:
            assert f"{colour} {shape}" not in caption, caption
    kinds = {c.split()[0] for c in captions}
    assert {"two", "three", "four", "a"} <= kinds


def test_grammar_words_and_shape_geometry() -> None:
    assert {"to", "left", "of", "above", "below", "two", "triangles"} <= set(vocabulary())
    assert [classify_shape(f) for f in (1.0, 0.79, 0.5)] == ["square", "circle", "triangle"]
    found = segment(render(Scene("three blue triangles", "count", tuple(
        Obj("blue", "triangle", x, 0.5, 0.22) for x in (0.2, 0.5, 0.8)))))
    assert [f.shape for f in found] == ["triangle"] * 3
