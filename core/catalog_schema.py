"""The catalog's table checks, shared by its sections (core/catalog.py, core/adapters.py):
unknown keys with a close match, required keys, types, and paths relative to the catalog file."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,),
                                        list: (list,)}


def _type_name(t: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", list: "a list"}[t]


def check_keys(where: str, raw: Any, keys: dict[str, type], required: tuple[str, ...],
               errors: list[str]) -> bool:
    """Unknown keys, missing keys and wrong types of one table; False when it is unusable."""
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table of keys, got {raw!r}")
        return False
    ok = True
    for key, value in raw.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(keys)}")
            ok = False
        elif isinstance(value, bool) or not isinstance(value, _TYPES[keys[key]]):
            errors.append(f"{where}: {key} must be {_type_name(keys[key])}, not {value!r}")
            ok = False
    for key in required:
        if key not in raw:
            errors.append(f"{where}: missing required key {key!r}")
            ok = False
    return ok


def relative(path: str, base: Path | None) -> str:
    """Relative paths are relative to the catalog file: "./sd15" always, "sd15" when it exists
    there (else it is a Hub id, loaded from the local cache)."""
    if base is None or not path or path.startswith("embedded:"):
        return path
    local = base / Path(path).expanduser()
    if path.startswith(".") or (not Path(path).is_absolute() and local.exists()):
        return str(local.resolve())
    return path
