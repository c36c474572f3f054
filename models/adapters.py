"""LoRA adapters resident in one pipeline: loaded under their catalog names, switched per call.

diffusers' `load_lora_weights(file, adapter_name=...)` injects an adapter's low-rank layers into
the pipeline's denoiser (and text encoder, when the file has layers for it); `set_adapters` picks
which ones a call uses, at which scales, without touching the base weights, and `disable_lora`
renders with the base weights alone.  Loaded adapters are kept least-recently-used first out
within a memory budget, so a catalog of many adapters costs only the ones in use.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from core.adapters import AdapterSpec

log = logging.getLogger("easel.models")


class AdapterError(RuntimeError):
    """An adapter that cannot be loaded into this pipeline (the message says which and why)."""


class AdapterCache:
    def __init__(self, pipe: Any, specs: Sequence[AdapterSpec], budget_bytes: int,
                 resolve: Any) -> None:
        self.pipe = pipe
        self.specs = {s.name: s for s in specs}
        self.budget = budget_bytes  # 0: no limit
        self.resolve = resolve  # catalog path -> local file (models.loading.resolve_path)
        self.resident: OrderedDict[str, int] = OrderedDict()  # name -> bytes, oldest first
        self.failed: dict[str, str] = {}
        # What the next call renders with; None: unknown (a load or switch failed midway).
        self.active: tuple[tuple[str, float], ...] | None = ()

    def bytes(self) -> int:
        return sum(self.resident.values())

    def preload(self) -> None:
        """Load adapters in catalog order while they fit the budget: a bad file is named in the
        log at start, not at its first request."""
        for name, spec in self.specs.items():
            size = self._size(spec)
            if self.budget and self.resident and self.bytes() + size > self.budget:
                break
            try:
                self._load(name)
            except AdapterError as exc:
                log.error("%s", exc)
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
            self.failed[name] = f"adapter {name} failed to load from {spec.path}: {exc}"
            raise AdapterError(self.failed[name]) from exc
        self.resident[name] = self._size(spec)
        log.info("loaded adapter %s (%d KB)", name, self.resident[name] // 1024)

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
        if not chosen:
            if self.resident:
                self.pipe.disable_lora()
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
