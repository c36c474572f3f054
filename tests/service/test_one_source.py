"""One contract in one place: a family's rules (core/rules.py) drive validation, /openapi.json,
/v1/models and, through /v1/models, the playground; change the rules and all of them follow.

In-process gateway, Redis on a closed port: validation answers before any job would be queued
(a request that passes it gets 503, "no queue", instead of 400).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import rules
from core.settings import GatewaySettings
from service.app import create_app
from tests.support import ROOT

SIZE = "1792x1024"  # a dall-e-3 size and no other family's (gpt-image-2 takes it as custom)


def _gateway(tmp_path: Path) -> Any:
    return create_app(GatewaySettings(redis_url="redis://127.0.0.1:1/0", auth="off",
                                      storage_dir=tmp_path / "files"))


def _views(tmp_path: Path) -> dict[str, Any]:
    """What each consumer of the rules says about dall-e-3 and SIZE."""

    async def go() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=_gateway(tmp_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            answer = await c.post("/v1/images/generations",
                                  json={"model": "dall-e-3", "prompt": "x", "size": SIZE})
            schema = (await c.get("/openapi.json")).json()
            model = (await c.get("/v1/models/dall-e-3")).json()
        body = schema["paths"]["/v1/images/generations"]["post"]["requestBody"]
        size = body["content"]["application/json"]["schema"]["properties"]["size"]
        return {"validation": answer.json()["error"]["param"] != "size",
                "openapi": SIZE in size["anyOf"][0]["enum"],
                "openapi_rules": SIZE in schema["x-easel-models"]["dall-e-3"]["sizes"],
                "models": SIZE in model["easel"]["rules"]["sizes"]}

    return asyncio.run(go())


def test_deleting_a_size_changes_every_view_together(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(_views(tmp_path).values()) == {True}
    dalle3 = rules.FAMILIES["dall-e-3"]
    smaller = dalle3.model_copy(update={"sizes": tuple(s for s in dalle3.sizes if s != SIZE)})
    monkeypatch.setitem(rules.FAMILIES, "dall-e-3", smaller)
    assert set(_views(tmp_path).values()) == {False}


def test_the_playground_reads_the_rules_from_v1_models() -> None:
    """No family table of its own and no guessing from ids (tests/e2e/test_playground.py shows
    its options following an altered /v1/models in a browser)."""
    script = "\n".join(p.read_text() for p in (ROOT / "service" / "static" / "js").glob("*.js"))
    assert "FAMILIES" not in script
    assert "'gpt-image" not in script and "'dall-e" not in script  # no ids, no id prefixes
    assert "api('/v1/models')" in script and "m.easel?.rules" in script
