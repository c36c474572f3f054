"""A contrastive image-text scorer (any `transformers.CLIPModel` folder) and best-of-k picking.

DALL·E 1 drew many candidates and let CLIP keep the ones that matched the caption; a pipeline
whose catalog entry names a `scorer` does the same for requests with `best_of` > 1
(models.rendering.generate_best).  The folder holds the model (`save_pretrained`), its tokenizer
and a `preprocessor_config.json` (size, mean, std); the shapes world's scorer
(models/shapes/scorer.py) is one, a published CLIP checkpoint another.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def token_ids(tokenizer: Any, captions: Sequence[str], length: int, pad_id: int,
              pooled_at_pad: bool) -> np.ndarray:
    """Ids padded to `length`. `pooled_at_pad`: the text tower pools at the first padding token
    (its eos id is the pad id), so one pad is always kept at the end."""
    keep = length - 1 if pooled_at_pad else length
    ids = tokenizer(list(captions), padding="max_length", max_length=keep, truncation=True,
                    return_tensors="np").input_ids
    out = np.full((len(captions), length), pad_id, dtype=np.int64)
    out[:, :ids.shape[1]] = ids
    return out


def pixels(images: Sequence[Image.Image] | np.ndarray, size: int, mean: Sequence[float],
           std: Sequence[float]) -> np.ndarray:
    """N x 3 x size x size floats, normalised; images are box-resampled to size x size."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack([np.asarray(
            im.convert("RGB") if im.size == (size, size) else
            im.convert("RGB").resize((size, size), Image.Resampling.BOX)) for im in images])
    x = arr.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    return (x - m) / s


class Scorer:
    """CLIP-style similarity of images and prompts: the cosine of the two projections x 100, as
    CLIPScore reports it. Thread-safe (one lock around the model)."""

    def __init__(self, folder: Path | str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no loading bar in a worker's log
        model: Any = CLIPModel.from_pretrained(str(folder), dtype=torch.float32)
        self.model = model.to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        text = self.model.config.text_config
        self.length = int(text.max_position_embeddings)
        self.pad_id = int(text.pad_token_id or 0)
        self.pooled_at_pad = text.eos_token_id == text.pad_token_id
        pre = Path(folder) / "preprocessor_config.json"
        config = json.loads(pre.read_text()) if pre.exists() else {}
        size = config.get("size", {})
        self.size = int(size.get("height", size.get("shortest_edge",
                                                    self.model.config.vision_config.image_size)))
        self.mean = config.get("image_mean", [0.5] * 3)
        self.std = config.get("image_std", [0.5] * 3)
        self.device = device
        self._lock = threading.Lock()

    def _features(self, out: Any) -> Any:
        import torch

        return torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)

    def similarity(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        """len(images) x len(prompts) similarities (cosine x 100)."""
        import torch

        ids = token_ids(self.tokenizer, prompts, self.length, self.pad_id, self.pooled_at_pad)
        x = pixels(images, self.size, self.mean, self.std)
        with self._lock, torch.inference_mode():
            img = self._features(self.model.get_image_features(
                pixel_values=torch.from_numpy(x).to(self.device)))
            txt = self._features(self.model.get_text_features(
                input_ids=torch.from_numpy(ids).to(self.device)))
            sims = img @ txt.T
        return (sims * 100).float().cpu().numpy()

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """Each image against its own prompt."""
        unique = list(dict.fromkeys(prompts))
        sims = self.similarity(images, unique)
        return [float(sims[i, unique.index(p)]) for i, p in enumerate(prompts)]


# Seeds of one image's candidates lie this far apart: a prime far above n (so a request's
# candidates never share a seed) and below 2**32 / MAX_BEST_OF (torch's CPU generator keeps only
# a seed's low 32 bits: s and s + 2**32 draw the same noise).
CANDIDATE_STRIDE = 1_000_003


def candidate_seeds(seeds: Sequence[int], best_of: int, max_seed: int = 2**63 - 1) -> list[int]:
    """Candidate j of the image with seed s uses s + j x CANDIDATE_STRIDE (candidate-major
    order): candidate 0 is the image drawn without `best_of`, and an image's candidates depend
    on its own seed only (so `seed` s with n=1 draws them again)."""
    return [(s + j * CANDIDATE_STRIDE) % (max_seed + 1) for j in range(best_of) for s in seeds]


def best_indices(scores: Sequence[float], n: int, best_of: int) -> list[int]:
    """For each of n images, the index (into the candidate_seeds order) of its best candidate;
    the earliest wins a tie."""
    return [max((i + j * n for j in range(best_of)), key=lambda c: scores[c]) for i in range(n)]
