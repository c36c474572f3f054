"""/openapi.json, with request bodies generated from the request models and the catalog.

The routes read bodies themselves (400s in OpenAI's shape, never FastAPI's 422), so FastAPI cannot
infer them: each body is the pydantic model's JSON schema (core/requests.py), narrowed to what
the configured catalog's families accept (core/rules.py).  `x-easel-models` gives each model's
rules, the same object `/v1/models` shows.  Schemathesis fuzzes the gateway from this document
(tests/service/test_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from core.catalog import Catalog
from core.requests import EditJSONRequest, EditRequest, GenerationRequest, VariationRequest
from core.rules import FamilyRules
from service.validation import CHOICES

REF = "#/components/schemas/{model}"
_FILE = {"type": "string", "format": "binary"}


def _narrow(prop: dict[str, Any], values: list[Any]) -> None:
    for branch in prop.get("anyOf", [prop]):
        if "enum" in branch:
            branch["enum"] = [v for v in branch["enum"] if v in values]


def _size_schema(families: list[FamilyRules]) -> dict[str, Any]:
    listed = list(dict.fromkeys(s for f in families for s in f.sizes))
    options: list[dict[str, Any]] = [{"type": "string", "enum": listed}]
    if any(f.custom_sizes is not None for f in families):
        options.append({"type": "string", "pattern": "^[0-9]{1,5}x[0-9]{1,5}$"})
    return {"anyOf": [*options, {"type": "null"}], "title": "Size",
            "description": "One of the model's sizes (GET /v1/models: easel.rules)."}


def body_schema(model: type[BaseModel], catalog: Catalog,
                components: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema, narrowed to the catalog; nested models go to `components`."""
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    families = [catalog.rules_of(m) for m in catalog.models.values()]
    props = schema["properties"]
    props["model"] = {"anyOf": [{"type": "string", "enum": list(catalog.models)},
                                {"type": "null"}],
                      "title": "Model", "description": props["model"].get("description", "")}
    props["size"] = _size_schema(families)
    for name, attr in CHOICES.items():  # enums: the union of what the families accept
        if name in props:
            _narrow(props[name], [v for f in families for v in getattr(f, attr)])
    return schema


def request_bodies(catalog: Catalog, components: dict[str, Any]) -> dict[str, dict[str, Any]]:
    edit = body_schema(EditRequest, catalog, components)
    edit["properties"] = {"image": _FILE, "mask": _FILE, **edit["properties"]}
    edit["required"] = ["image", *edit.get("required", [])]
    variation = body_schema(VariationRequest, catalog, components)
    variation["properties"] = {"image": _FILE, **variation["properties"]}
    variation["required"] = ["image"]

    def body(content: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {"required": True, "content": {k: {"schema": v} for k, v in content.items()}}

    json_edit = body_schema(EditJSONRequest, catalog, components)
    return {
        "/v1/images/generations": body(
            {"application/json": body_schema(GenerationRequest, catalog, components)}),
        "/v1/images/edits": body({"multipart/form-data": edit, "application/json": json_edit}),
        "/v1/images/variations": body({"multipart/form-data": variation}),
    }


def install(app: FastAPI, catalog: Catalog) -> None:
    """Make the app's /openapi.json describe the request bodies of this catalog."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, request_body in request_bodies(catalog, components).items():
                schema["paths"][path]["post"]["requestBody"] = request_body
            schema["x-easel-models"] = {m.id: catalog.rules_of(m).model_dump(mode="json")
                                        for m in catalog.models.values()}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
