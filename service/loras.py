"""Easel's `loras` extension, checked against the catalog's adapters (core/adapters.py).

Types, count and scale bounds come from the request model (core/requests.py `LoraChoice`); here:
the names a model's pipeline takes, each once, with the catalog's default scale filled in.
"""

from __future__ import annotations

import json
from typing import Any

from core.catalog import Catalog, ModelSpec
from core.errors import bad_request


def json_field(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise bad_request(f"Invalid value for '{name}': send it as JSON text, e.g. "
                          '[{"name": "outline", "scale": 0.8}].', name, "invalid_value") from exc


def chosen_loras(req: Any, catalog: Catalog, model: ModelSpec) -> tuple[tuple[str, float], ...]:
    """Known adapters, each once, trained for this model's pipeline; default scales filled in."""
    chosen = getattr(req, "loras", None) or []
    offered = {a.name: a for a in catalog.adapters_of(model.pipeline)}
    seen: set[str] = set()
    for i, lora in enumerate(chosen):
        if lora.name not in offered:
            known = lora.name in catalog.adapters
            why = (f"adapter '{lora.name[:64]}' does not fit model '{model.id}'" if known
                   else f"unknown adapter '{lora.name[:64]}'")
            raise bad_request(f"Invalid value for 'loras[{i}].name': {why}; model "
                              f"'{model.id}' takes {', '.join(offered) or 'no adapters'}.",
                              f"loras[{i}].name", "invalid_value")
        if lora.name in seen:
            raise bad_request(f"Invalid value for 'loras[{i}].name': adapter '{lora.name}' is "
                              "listed twice.", f"loras[{i}].name", "invalid_value")
        seen.add(lora.name)
    return tuple(sorted((c.name, offered[c.name].scale if c.scale is None else c.scale)
                        for c in chosen))
