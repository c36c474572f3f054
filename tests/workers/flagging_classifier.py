"""An output classifier for tests (EASEL_OUTPUT_CLASSIFIER=tests.workers.flagging_classifier:
classify): it flags every 128-pixel-wide image as sexual, so a test picks the verdict by size."""

from __future__ import annotations

from PIL import Image


def classify(image: Image.Image) -> list[str]:
    return ["sexual"] if image.width == 128 else []
