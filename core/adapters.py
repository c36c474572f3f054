"""The adapter section of the model catalog: LoRA files requests may apply per request (`loras`).

```toml
[adapters.outline]
path = "embedded:shapes-outline"    # a diffusers/peft LoRA .safetensors file
pipelines = ["shapes"]              # the pipelines whose weights it was trained on
scale = 1.0                         # the scale of a request that names none
```

Checked with the rest of the catalog (core/catalog.py): every mistake names the file and entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.catalog_schema import check_keys, relative
from core.rules import LORA_MAX_SCALE

ADAPTER_KEYS: dict[str, type] = {"path": str, "pipelines": list, "scale": float,
                                 "description": str}


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    path: str  # a .safetensors file, or "embedded:NAME" (models.loading.EMBEDDED_ADAPTERS)
    pipelines: tuple[str, ...]
    scale: float = 1.0
    description: str = ""


def _adapter(name: str, raw: Any, pipelines: dict[str, Any], base: Path | None,
             errors: list[str]) -> AdapterSpec | None:
    where = f"[adapters.{name}]"
    if not check_keys(where, raw, ADAPTER_KEYS, ("path", "pipelines"), errors):
        return None
    spec = AdapterSpec(name, relative(raw["path"], base),
                       tuple(str(p) for p in raw["pipelines"]), float(raw.get("scale", 1.0)),
                       raw.get("description", ""))
    ok = True
    unknown = [p for p in spec.pipelines if p not in pipelines]
    if unknown or not spec.pipelines:
        errors.append(f"{where}: pipelines must name pipelines of this catalog; unknown: "
                      f"{unknown or '(none given)'}; the catalog has: {', '.join(pipelines)}")
        ok = False
    if abs(spec.scale) > LORA_MAX_SCALE:
        errors.append(f"{where}: scale must be within ±{LORA_MAX_SCALE:g}, not {spec.scale}")
        ok = False
    if not spec.path.startswith("embedded:"):
        if not spec.path.endswith(".safetensors"):
            errors.append(f"{where}: path must be a LoRA .safetensors file (diffusers/peft "
                          f"format), not {spec.path!r}")
            ok = False
        elif not Path(spec.path).is_file():
            errors.append(f"{where}: path {spec.path} is not a file (relative paths are "
                          "relative to the catalog file)")
            ok = False
    return spec if ok else None


def parse_adapters(raw: Any, pipelines: dict[str, Any], base: Path | None,
                   errors: list[str]) -> dict[str, AdapterSpec]:
    """`[adapters.NAME]` tables -> specs; mistakes go to `errors`, one line each."""
    if not isinstance(raw, dict):
        errors.append("adapters must be tables: [adapters.NAME]")
        return {}
    adapters = {}
    for name, table in raw.items():
        spec = _adapter(name, table, pipelines, base, errors)
        if spec is not None:
            adapters[name] = spec
    return adapters
