"""Take peft's LoRA wrappers out of a pipeline's modules while no adapter is in use.

Once an adapter is loaded, peft has wrapped every layer it targets; `disable_lora` leaves the
wrappers in place, and each still runs its own Python on every call.  On a small model on a CPU
that is measurable on every request, with no adapter asked for (docs/benchmarks.md).  Bypassed,
the module tree holds the wrapped base layers themselves (the same weights, nothing copied);
restored, the wrappers go back exactly where they were, before diffusers touches adapters again.
"""

from __future__ import annotations

from typing import Any


def _modules(pipe: Any) -> list[Any]:
    import torch

    return [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]


class LoraBypass:
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        # (parent module, attribute, wrapper) of every wrapper taken out: restored in reverse.
        self._taken: list[tuple[Any, str, Any]] = []

    def bypass(self) -> None:
        """Replace every LoRA wrapper by its base layer (nothing when already bypassed)."""
        if self._taken:
            return
        from peft.tuners.tuners_utils import BaseTunerLayer

        for root in _modules(self.pipe):
            wrapped = [(name, m) for name, m in root.named_modules()
                       if isinstance(m, BaseTunerLayer)]
            for name, wrapper in wrapped:
                parent_name, _, attribute = name.rpartition(".")
                parent = root.get_submodule(parent_name) if parent_name else root
                self._taken.append((parent, attribute, wrapper))
                setattr(parent, attribute, wrapper.get_base_layer())

    def restore(self) -> None:
        """Put every wrapper back: before any load, switch or deletion of adapters."""
        while self._taken:
            parent, attribute, wrapper = self._taken.pop()
            setattr(parent, attribute, wrapper)
