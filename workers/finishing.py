"""From rendered pixels to stored bytes: output moderation, watermark, encoding, C2PA signature.

Order matters: the classifier sees the image as rendered; the watermark changes pixels, so it
comes before encoding; the manifest hashes the encoded file, so signing is last.  Streaming
previews never come through here: they are unsigned, unmarked drafts (docs/provenance.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from PIL import Image

from core.jobs import RenderJob
from core.settings import WorkerSettings
from core.storage import StorageError
from workers import watermark
from workers.encoding import encode
from workers.provenance import Origin, Signer

log = logging.getLogger("easel.worker")
Classifier = Callable[[Image.Image], Iterable[str]]
# Output categories `moderation: low` lets through (the prompt policy's are in its lists).
ALLOWED_AT_LOW = frozenset({"sexual"})


def load_classifier(settings: WorkerSettings) -> Classifier | None:
    """The output classifier the settings name, or None."""
    name = settings.output_classifier.strip()
    if name == "auto":  # NudeNet costs ~15 ms an image on one CPU thread: on wherever installed
        name = "nudenet" if importlib.util.find_spec("nudenet") is not None else "off"
    if name in ("", "off"):
        return None
    if name == "nudenet":
        from workers.classifier import NudityClassifier

        return NudityClassifier(settings.output_classifier_threshold, settings.threads)
    module, _, attr = name.partition(":")
    if not attr:
        raise SystemExit(f"EASEL_OUTPUT_CLASSIFIER={name!r}: expected nudenet, off, auto or "
                         "package.module:function")
    hook: Classifier = getattr(importlib.import_module(module), attr)
    return hook


class Finisher:
    """Per worker process: the signer, watermark key and classifier, loaded once."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        chain, key = settings.c2pa_cert_chain, settings.c2pa_private_key
        if (chain is None) != (key is None):
            raise SystemExit("set both EASEL_C2PA_CERT_CHAIN and EASEL_C2PA_PRIVATE_KEY (or "
                             "neither: images are then unsigned)")
        self.signer = None
        if chain and key:
            try:
                self.signer = Signer(chain, key, settings.c2pa_signing_alg)
            except Exception as exc:  # unreadable files, a key that does not fit, c2pa's checks
                raise SystemExit(f"C2PA signing cannot start with EASEL_C2PA_CERT_CHAIN={chain} "
                                 f"and EASEL_C2PA_PRIVATE_KEY={key}: {exc}") from exc
        self.classifier = load_classifier(settings)

    def describe(self) -> str:
        return (f"C2PA signing {'on (' + self.signer.algorithm + ')' if self.signer else 'OFF'}"
                f", watermark {'on' if self.settings.watermark else 'off'}, output classifier "
                f"{type(self.classifier).__name__ if self.classifier else 'off'}")

    def screen(self, job: RenderJob, images: list[Image.Image]) -> list[str]:
        """Categories the classifier found in any image, after `moderation: low` relaxes
        its share; empty when the images may be delivered."""
        if self.classifier is None or job.moderation == "off":
            return []
        found: set[str] = set()
        for image in images:
            found.update(self.classifier(image))
        if job.moderation == "low":
            found -= ALLOWED_AT_LOW
        return sorted(found)


_lock = threading.Lock()
_finishers: dict[int, Finisher] = {}


def finisher(settings: WorkerSettings) -> Finisher:
    """This process's Finisher for these settings (built on first use)."""
    with _lock:
        if id(settings) not in _finishers:
            _finishers[id(settings)] = Finisher(settings)
        return _finishers[id(settings)]


class JobFinish:
    """Finishing for one job: `screen(images)`, then `finish(image)` for each image."""

    def __init__(self, rt: Any, job: RenderJob) -> None:
        self.rt, self.job = rt, job
        self.f = finisher(rt.settings)
        self.origin = Origin(job.kind, job.model, job.pipeline)
        self._parent: bytes | None = None

    def screen(self, images: list[Image.Image]) -> list[str]:
        violations = self.f.screen(self.job, images)
        if violations:
            log.warning("job %s (request %s): output withheld, classifier found %s",
                        self.job.job_id, self.job.request_id, ", ".join(violations),
                        extra={"job_id": self.job.job_id, "request_id": self.job.request_id})
        return violations

    def parent(self) -> bytes | None:
        """The edited or varied input (read once per job), for the manifest's ingredient."""
        if self._parent is None and self.job.kind != "generate" and self.job.image_keys:
            try:
                self._parent = self.rt.storage.get(self.job.image_keys[0])
            except StorageError as exc:
                log.warning("job %s: input unreadable for its manifest (%s)", self.job.job_id,
                            exc)
        return self._parent

    def __call__(self, image: Image.Image) -> bytes:
        s, job = self.f.settings, self.job
        if s.watermark:
            image = watermark.embed(image, s.watermark_key)
        data = encode(image, job.output_format, job.output_compression)
        if self.f.signer is None:
            return data
        return self.f.signer.sign(data, job.output_format, self.origin, self.parent())


def for_job(rt: Any, job: RenderJob) -> JobFinish:
    return JobFinish(rt, job)
