"""LoRA adapters resident in one pipeline: loaded under their catalog names, switched per call.

diffusers' `load_lora_weights(file, adapter_name=...)` injects an adapter's low-rank layers into
the pipeline's denoiser (and text encoder, when the file has layers for it); `set_adapters` picks
which ones a call uses, at which scales, without touching the base weights, and `disable_lora`
renders with the base weights alone (while no adapter is in use, peft's wrappers are also taken
out of the modules: models/lora_bypass.py).  Loaded adapters are kept least-recently-used first
out within a memory budget, so a catalog of many adapters costs only the ones in use.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from core.adapters import AdapterSpec
from models.lora_bypass import LoraBypass

log = logging.getLogger("easel.models")


class AdapterError(RuntimeError):
    """An adapter that cannot be loaded into this pipeline (the message says which and why).
    Final for a job: the worker fails it at once, and the client gets the message
    (workers.worker, error type `adapter_unavailable`)."""


class AdapterCache:
    def __init__(self, pipe: Any, specs: Sequence[AdapterSpec], budget_bytes: int,
                 resolve: Any, pipeline: str = "") -> None:
        self.pipe = pipe
        self.pipeline = pipeline  # named in failure messages: one adapter may serve several
        self.specs = {s.name: s for s in specs}
        self.budget = budget_bytes  # 0: no limit
        self.resolve = resolve  # catalog path -> local file (models.loading.resolve_path)
        self.resident: OrderedDict[str, int] = OrderedDict()  # name -> bytes, oldest first
        # name -> why it failed to load: not tried again (a bad file stays bad) until the
        # catalog changes its entry; the heartbeat reports it (workers.residency.describe).
        self.failed: dict[str, str] = {}
        # What the next call renders with; None: unknown (a load or switch failed midway).
        self.active: tuple[tuple[str, float], ...] | None = ()
        self.bypass = LoraBypass(pipe)  # restored first in preload() and activate()

    def bytes(self) -> int:
        return sum(self.resident.values())

    def preload(self) -> None:
        """Load adapters in catalog order while they fit the budget: a bad file is named in the
        log at start, not at its first request."""
        self.bypass.restore()
        for name, spec in self.specs.items():
            size = self._size(spec)
            if self.budget and self.resident and self.bytes() + size > self.budget:
                break
            try:
                self._load(name)
            except AdapterError as exc:  # the others and the pipeline itself still serve
                log.error("%s (file %s)", exc, spec.path, extra={"pipeline": self.pipeline})
        self.active = None  # loading activates what it loads: the next call sets its own

    def _size(self, spec: AdapterSpec) -> int:
        try:
            return os.path.getsize(self.resolve(spec.path))
        except (OSError, KeyError):
            return 0

    def _load(self, name: str) -> None:
        spec = self.specs.get(name)
        if spec is None:
            raise AdapterError(f"adapter {name!r} is not in the catalog for this pipeline")
        if name in self.failed:
            raise AdapterError(self.failed[name])
        try:
            path = self.resolve(spec.path)
            with warnings.catch_warnings():  # peft warns of every second adapter: intended here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipe.load_lora_weights(path, adapter_name=name)
        except Exception as exc:
            self.failed[name] = (f"adapter {name} for pipeline {self.pipeline} failed to load: "
                                 f"{_why(exc, spec.path, self.resolve)}")
            raise AdapterError(self.failed[name]) from exc
        self.resident[name] = self._size(spec)
        log.info("loaded adapter %s (%d KB)", name, self.resident[name] // 1024)

    def respec(self, specs: Sequence[AdapterSpec]) -> None:
        """A reloaded catalog: an entry it changed or dropped loses its failure, so a fixed
        path is tried again at its next request (and a dropped one is no longer reported)."""
        new = {s.name: s for s in specs}
        for name in list(self.failed):
            if new.get(name) != self.specs.get(name):
                del self.failed[name]
        self.specs = new

    def _evict_for(self, keep: set[str]) -> None:
        """Drop the least recently used adapters not in `keep` until the budget holds."""
        for name in list(self.resident):
            if not self.budget or self.bytes() <= self.budget:
                return
            if name not in keep:
                self.pipe.delete_adapters(name)
                del self.resident[name]
                log.info("unloaded adapter %s (least recently used)", name)

    def activate(self, loras: Sequence[tuple[str, float]]) -> None:
        """Render the next calls with exactly these adapters ((); the base weights alone)."""
        chosen = tuple((name, float(scale)) for name, scale in loras)
        if chosen == self.active:
            return
        self.active = None
        # peft's wrappers back before diffusers touches adapters (load, delete, switch): the
        # two entry points do it first, so _load and _evict_for find them in place.
        self.bypass.restore()
        if not chosen:
            if self.resident:
                self.pipe.disable_lora()
                self.bypass.bypass()  # the base layers alone, without the wrappers' overhead
            self.active = ()
            return
        for name, _ in chosen:
            if name not in self.resident:
                self._load(name)
            self.resident.move_to_end(name)  # most recently used
        self._evict_for({name for name, _ in chosen})
        self.pipe.enable_lora()
        self.pipe.set_adapters([n for n, _ in chosen], adapter_weights=[s for _, s in chosen])
        self.active = chosen


def _why(exc: BaseException, path: str, resolve: Any) -> str:
    """One line for clients and readiness: the error, the root cause diffusers wraps it around
    (a corrupt file's "Error while deserializing header: ..."), folders left out (the log line
    names the file)."""
    root, seen = exc, {id(exc)}
    while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
        root = inner
        seen.add(id(root))
    text = str(exc).strip() or type(exc).__name__
    if root is not exc:
        text += f" ({type(root).__name__}: {root})"
    try:
        paths = {path, str(resolve(path))}
    except Exception:  # the path itself did not resolve: that is the error shown
        paths = {path}
    for full in sorted(paths, key=len, reverse=True):
        text = text.replace(full, os.path.basename(full))
    return " ".join(text.split())
