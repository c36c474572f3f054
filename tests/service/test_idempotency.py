"""Idempotency-Key middleware on a small app, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis import Redis

from core.settings import GatewaySettings
from service.auth import KeyChecker, hash_key
from service.idempotency import Idempotency
from tests.service.test_background import _async


def _app(redis: Redis) -> tuple[FastAPI, dict[str, Any]]:
    app = FastAPI()
    app.state.settings = GatewaySettings(idempotency_window_seconds=60)
    app.state.keys = KeyChecker({hash_key("sk-a"): "a", hash_key("sk-b"): "b"})
    app.state.redis = _async(redis)
    calls: dict[str, Any] = {"n": 0, "status": [], "gate": None}

    @app.post("/v1/things")
    async def things(request: Request) -> JSONResponse:
        calls["n"] += 1
        if calls["gate"] is not None:
            await calls["gate"].wait()
        status = calls["status"].pop(0) if calls["status"] else 200
        body = await request.body()
        return JSONResponse({"run": calls["n"], "size": len(body)}, status,
                            headers={"Location": f"/v1/things/{calls['n']}", "X-Other": "1"})

    app.add_middleware(Idempotency)
    return app, calls


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _h(key: str = "k1", who: str = "sk-a") -> dict[str, str]:
    return {"Idempotency-Key": key, "Authorization": f"Bearer {who}"}


def test_a_repeat_gets_the_first_answer_and_another_body_is_refused(redis: Redis) -> None:
    app, calls = _app(redis)

    async def run() -> list[httpx.Response]:
        async with _client(app) as c:
            return [await c.post("/v1/things", json={"x": 1}, headers=_h()),
                    await c.post("/v1/things", json={"x": 1}, headers=_h()),
                    await c.post("/v1/things", json={"x": 2}, headers=_h()),
                    await c.post("/v1/things", json={"x": 2}, headers=_h(who="sk-b")),
                    await c.post("/v1/things", json={"x": 1}),
                    await c.post("/v1/things", json={"x": 1}, headers=_h(key=""))]

    first, repeat, reused, other_owner, no_key, empty_key = asyncio.run(run())
    assert first.json() == repeat.json() == {"run": 1, "size": 7}
    assert repeat.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in \
        first.headers
    assert repeat.headers["location"] == "/v1/things/1" and "x-other" not in repeat.headers
    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert other_owner.json()["run"] == 2  # keys are scoped per API key
    assert no_key.json()["run"] == 3
    assert empty_key.status_code == 400 and calls["n"] == 3


def test_a_repeat_while_the_first_runs_gets_409_and_never_runs(redis: Redis) -> None:
    app, calls = _app(redis)
    calls["gate"] = asyncio.Event()

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with _client(app) as c:
            first = asyncio.ensure_future(c.post("/v1/things", json={}, headers=_h()))
            while calls["n"] == 0:
                await asyncio.sleep(0.01)
            during = await c.post("/v1/things", json={}, headers=_h())
            calls["gate"].set()
            return await first, during, await c.post("/v1/things", json={}, headers=_h())

    first, during, after = asyncio.run(run())
    assert during.status_code == 409 and during.headers["retry-after"] == "1"
    assert during.json()["error"]["code"] == "idempotency_key_in_use"
    assert first.json() == after.json() and calls["n"] == 1


def test_answers_that_say_try_again_are_not_kept(redis: Redis) -> None:
    app, calls = _app(redis)
    calls["status"] = [503, 429, 200]

    async def run() -> list[int]:
        async with _client(app) as c:
            return [(await c.post("/v1/things", json={}, headers=_h())).status_code
                    for _ in range(4)]

    assert asyncio.run(run()) == [503, 429, 200, 200] and calls["n"] == 3


def test_multipart_repeats_match_whatever_boundary_the_sdk_draws(redis: Redis) -> None:
    app, calls = _app(redis)
    files = {"image": ("a.png", b"\x89PNG" + b"x" * 70_000, "image/png")}

    async def run() -> list[httpx.Response]:
        async with _client(app) as c:  # httpx draws a new random boundary for each request
            return [await c.post("/v1/things", files=files, data={"prompt": p}, headers=_h())
                    for p in ("a", "a", "b")]

    first, repeat, other = asyncio.run(run())
    assert repeat.headers.get("idempotent-replayed") == "true" and repeat.json() == first.json()
    assert other.status_code == 400 and calls["n"] == 1


def test_bad_keys_and_other_paths_pass_through(redis: Redis) -> None:
    app, calls = _app(redis)

    @app.post("/elsewhere")
    async def elsewhere() -> dict[str, int]:
        calls["n"] += 1
        return {"n": calls["n"]}

    async def run() -> list[int]:
        async with _client(app) as c:
            return [(await c.post("/elsewhere", headers=_h())).json()["n"],
                    (await c.post("/elsewhere", headers=_h())).json()["n"],
                    (await c.post("/v1/things", json={}, headers=_h(who="sk-bad"))).json()["run"],
                    (await c.post("/v1/things", json={}, headers=_h(who="sk-bad"))).json()["run"]]

    assert asyncio.run(run()) == [1, 2, 3, 4]
