"""Request-body schemas for the OpenAPI document (the routes read bodies by hand, see
service/validation.py, so FastAPI cannot infer them).  They document the API at /docs and let
schemathesis generate requests from /openapi.json."""

from __future__ import annotations

from typing import Any

_NULLABLE_STR = {"type": "string", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_COMMON: dict[str, Any] = {
    "model": {**_NULLABLE_STR, "example": "dall-e-2"},
    "n": {**_NULLABLE_INT, "minimum": 1, "maximum": 10},
    "size": {**_NULLABLE_STR, "example": "256x256"},
    "response_format": {**_NULLABLE_STR, "enum": ["url", "b64_json", None]},
    "user": _NULLABLE_STR,
    "seed": {**_NULLABLE_INT, "minimum": 0},
    "steps": {**_NULLABLE_INT, "minimum": 1},
    "output_format": {**_NULLABLE_STR, "enum": ["png", "jpeg", "webp", None]},
    "output_compression": {**_NULLABLE_INT, "minimum": 0, "maximum": 100},
}
_PROMPTED: dict[str, Any] = {
    **_COMMON,
    "prompt": {"type": "string", "example": "a red circle to the left of a blue square"},
    "quality": _NULLABLE_STR,
    "negative_prompt": _NULLABLE_STR,
    "guidance_scale": {"type": "number", "nullable": True},
    "background": {**_NULLABLE_STR, "enum": ["transparent", "opaque", "auto", None]},
    "moderation": _NULLABLE_STR,
    "stream": {"type": "boolean", "nullable": True},
    "partial_images": {**_NULLABLE_INT, "minimum": 0, "maximum": 3},
}

GENERATION_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["prompt"],
    "properties": {**_PROMPTED, "style": _NULLABLE_STR}}}}}}

_FILE = {"type": "string", "format": "binary"}
EDIT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image", "prompt"],
    "properties": {"image": _FILE, "mask": _FILE, "input_fidelity": _NULLABLE_STR,
                   "strength": {"type": "number", "nullable": True},
                   **{k: v for k, v in _PROMPTED.items() if k != "stream"}}}}}}}

VARIATION_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": _FILE, **_COMMON}}}}}}
