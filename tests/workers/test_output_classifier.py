"""The output classifier hook: which classifier a worker loads, how NudeNet's detections become
categories, and what `moderation: low` lets through."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from core.jobs import RenderJob
from core.settings import WorkerSettings
from workers import finishing
from workers.classifier import NudityClassifier


def _job(moderation: str = "auto") -> RenderJob:
    return RenderJob(job_id="j", model="gpt-image-1", pipeline="shapes", width=64, height=64,
                     n=1, seeds=[1], steps=4, guidance=5.0, moderation=moderation)


def test_auto_runs_nudenet_wherever_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(finishing.load_classifier(WorkerSettings()), NudityClassifier)
    assert finishing.load_classifier(WorkerSettings(output_classifier="off")) is None
    monkeypatch.setattr(finishing.importlib.util, "find_spec", lambda name: None)
    assert finishing.load_classifier(WorkerSettings()) is None  # a worker without nudenet
    hook = finishing.load_classifier(
        WorkerSettings(output_classifier="tests.workers.flagging_classifier:classify"))
    assert hook is not None and list(hook(Image.new("RGB", (128, 128)))) == ["sexual"]
    with pytest.raises(SystemExit):
        finishing.load_classifier(WorkerSettings(output_classifier="no-such-thing"))


@pytest.fixture(scope="module")
def nudenet() -> NudityClassifier:
    return NudityClassifier(threshold=0.5, threads=1)


def test_nudenet_passes_a_shapes_image(nudenet: NudityClassifier) -> None:
    image = Image.new("RGB", (256, 256), "white")
    image.paste((200, 30, 30), (40, 40, 120, 120))
    assert nudenet(image) == []


@pytest.mark.parametrize(("detections", "expected"), [
    ([{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9}], ["sexual"]),
    ([{"class": "MALE_GENITALIA_EXPOSED", "score": 0.6}], ["sexual"]),
    ([{"class": "FEMALE_BREAST_EXPOSED", "score": 0.3}], []),  # below the threshold
    ([{"class": "FEMALE_BREAST_COVERED", "score": 0.99}, {"class": "FACE_FEMALE",
                                                          "score": 0.99}], []),
])
def test_nudenet_detections_become_categories(nudenet: NudityClassifier,
                                              monkeypatch: pytest.MonkeyPatch,
                                              detections: list[dict[str, Any]],
                                              expected: list[str]) -> None:
    monkeypatch.setattr(nudenet, "detections", lambda image: detections)
    assert nudenet(Image.new("RGB", (64, 64))) == expected


def test_low_lets_sexual_through_and_off_skips_the_classifier() -> None:
    settings = WorkerSettings(output_classifier="tests.workers.flagging_classifier:classify")
    finisher = finishing.Finisher(settings)
    flagged, fine = Image.new("RGB", (128, 128)), Image.new("RGB", (64, 64))
    assert finisher.screen(_job("auto"), [fine, flagged]) == ["sexual"]
    assert finisher.screen(_job("auto"), [fine]) == []
    assert finisher.screen(_job("low"), [flagged]) == []
    assert finisher.screen(_job("off"), [flagged]) == []
