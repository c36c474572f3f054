"""Bad input over raw HTTP: always a 4xx with the OpenAI envelope, never 422 or 500."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Stack


def _post(stack: Stack, body: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/images/generations", content=body,
                      headers={"content-type": "application/json", **headers}, timeout=60)


def _assert_envelope(r: httpx.Response, status: int, param: str | None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and err["type"]
    assert err["param"] == param


@pytest.mark.parametrize("body,param", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x" * 1001, "model": "dall-e-2"}, "prompt"),
    ({"prompt": "x", "size": "300x300"}, "size"),
    ({"prompt": "x", "size": 256}, "size"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": 11}, "n"),
    ({"prompt": "x", "n": "2"}, "n"),
    ({"prompt": "x", "n": True}, "n"),
    ({"prompt": "x", "n": 1.5}, "n"),
    ({"prompt": "x", "response_format": "jpeg"}, "response_format"),
    ({"prompt": "x", "model": "dall-e-2", "style": "vivid"}, "style"),
    ({"prompt": "x", "model": "dall-e-3", "quality": "ultra"}, "quality"),
    ({"prompt": "x", "model": "dall-e-3", "n": 2}, "n"),
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "guidance_scale": "high"}, "guidance_scale"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "bogus": 1}, "bogus"),
    ({"prompt": "x", "model": 3}, "model"),
])
def test_bad_values_are_400_with_param(stack: Stack, body: dict, param: str) -> None:
    _assert_envelope(_post(stack, json.dumps(body)), 400, param)


def test_unknown_model_is_404(stack: Stack) -> None:
    r = _post(stack, json.dumps({"prompt": "x", "model": "sdxl-nope"}))
    _assert_envelope(r, 404, "model")
    assert r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("raw", ["{bad json", "", "[1, 2]", "null", '"text"', "\xff\xfe"])
def test_malformed_bodies_are_400(stack: Stack, raw: str) -> None:
    _assert_envelope(_post(stack, raw.encode("latin-1")), 400, None)


def test_oversized_body_is_413(stack: Stack) -> None:
    r = _post(stack, json.dumps({"prompt": "x" * 2_000_000}))
    _assert_envelope(r, 413, None)


def test_unknown_route_is_404_envelope(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v1/nothing-here")
    _assert_envelope(r, 404, None)


def test_wrong_method_is_enveloped(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v1/images/generations")
    assert r.status_code == 405 and "error" in r.json()


def test_models_health_ready_metrics(stack: Stack) -> None:
    models = httpx.get(f"{stack.base_url}/v1/models").json()
    assert models["object"] == "list"
    assert {"dall-e-2", "dall-e-3", "easel-shapes"} <= {m["id"] for m in models["data"]}
    assert all(m["workers"] >= 1 for m in models["data"])  # what is actually served
    assert httpx.get(f"{stack.base_url}/v1/models/dall-e-3").json()["id"] == "dall-e-3"
    assert httpx.get(f"{stack.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["workers"]["shapes"] >= 1
    text = httpx.get(f"{stack.base_url}/metrics").text
    assert "easel_requests_total" in text and "easel_queue_depth" in text


def test_request_id_is_returned(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/healthz", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


def test_file_route_rejects_traversal(stack: Stack) -> None:
    for path in ("/files/../pyproject.toml", "/files/%2e%2e/%2e%2e/etc/passwd",
                 "/files/images/none/0.png"):
        assert httpx.get(f"{stack.base_url}{path}").status_code == 404
