"""The built-in output classifier: NudeNet's detector (an ONNX model shipped inside the `nudenet`
package, run with onnxruntime on CPU), mapped onto moderation categories.

Any other classifier plugs in the same way (EASEL_OUTPUT_CLASSIFIER=package.module:function): a
callable taking a PIL image and returning the category names it found (empty: deliver it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# NudeNet's labels that make an image sexual content; covered parts, faces and feet do not.
SEXUAL = frozenset({"FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_EXPOSED",
                    "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"})


class NudityClassifier:
    def __init__(self, threshold: float = 0.5, threads: int = 1) -> None:
        import nudenet
        import onnxruntime
        from nudenet import NudeDetector

        self.threshold = threshold
        self.detector: Any = NudeDetector()
        # NudeNet's own session takes every core; the worker's torch threads are the budget.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        model = Path(nudenet.__file__).parent / "320n.onnx"  # the detector the wheel ships
        self.detector.onnx_session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"])

    def detections(self, image: Image.Image) -> list[dict[str, Any]]:
        # NudeNet converts its input from RGBA to BGR itself.
        return list(self.detector.detect(np.asarray(image.convert("RGBA"))))

    def __call__(self, image: Image.Image) -> list[str]:
        hits = [d for d in self.detections(image)
                if d["class"] in SEXUAL and d["score"] >= self.threshold]
        return ["sexual"] if hits else []
