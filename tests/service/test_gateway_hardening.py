"""Security audit, gateway items (issue 11), in-process: no Redis or worker is needed, since
each request here is answered before a job would be queued (Redis points at a closed port)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import URL
from starlette.requests import HTTPConnection

from core.settings import GatewaySettings
from service.app import create_app
from service.auth import hash_key

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every Redis call fails fast
KEY = {"authorization": "Bearer sk-audit"}
JSON = {"content-type": "application/json"}


def _app(tmp_path: Path, **settings: Any) -> Any:
    base: dict[str, Any] = {"redis_url": DEAD_REDIS, "storage_dir": tmp_path / "files",
                            "auth": "required", "api_keys": f"audit:{hash_key('sk-audit')}"}
    return create_app(GatewaySettings(**{**base, **settings}))


def _call(app: Any, method: str, path: str, host: str = "127.0.0.1:8000",
          **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            request = c.build_request(method, path, **kw)
            request.headers["host"] = host
            return await c.send(request)

    return asyncio.run(go())


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text[:300]
    error: dict[str, Any] = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    return error


def _old_starlette_url(self: HTTPConnection) -> URL:
    """Starlette < 1.3.1 rebuilt the URL as scheme://<Host header><path> and parsed it again,
    so `Host: example.com/abc?bar=` turned the path /v1/models into /abc (CVE-2026-48710)."""
    host = dict(self.scope["headers"]).get(b"host", b"").decode("latin-1")
    return URL(f"{self.scope.get('scheme', 'http')}://{host}{self.scope['path']}")


@pytest.mark.parametrize("emulate_old_starlette", [False, True])
def test_a_crafted_host_header_cannot_skip_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               emulate_old_starlette: bool) -> None:
    if emulate_old_starlette:  # so the test checks Easel, whatever Starlette is installed
        monkeypatch.setattr(HTTPConnection, "url", property(_old_starlette_url))
    app = _app(tmp_path, allowed_hosts="*")  # no Host check: auth alone must hold
    r = _call(app, "GET", "/v1/models", host="example.com/abc?bar=")
    assert _error(r, 401)["code"] == "invalid_api_key"
    r = _call(app, "GET", "/v1/models", host="example.com/abc?bar=", headers=KEY)
    assert r.status_code == 200  # and the key still identifies its caller


def test_only_localhost_names_are_answered_on_a_loopback_bind(tmp_path: Path) -> None:
    app = _app(tmp_path, auth="off", public_url="https://easel.example.lan:8443")
    for host in ("evil.example", "evil.example:8000", "example.com/abc?bar=", "127.0.0.1.evil.io",
                 "localhost:80/x"):
        assert _error(_call(app, "GET", "/v1/models", host=host), 400)["code"] == "invalid_host"
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000",
                 "easel.example.lan"):
        assert _call(app, "GET", "/v1/models", host=host).status_code == 200, host
    listed = _app(tmp_path, auth="off", allowed_hosts="easel.lan")  # added to localhost names
    for host, status in (("easel.lan:8000", 200), ("localhost:8000", 200), ("evil.example", 400)):
        assert _call(listed, "GET", "/v1/models", host=host).status_code == status, host
    # Probes call with whatever address they know; /healthz and /readyz reveal nothing.
    assert _call(app, "GET", "/healthz", host="10.0.0.7:8000").status_code == 200
    # A cross-site page posting a form (no CORS preflight for multipart) is refused.
    r = _call(app, "POST", "/v1/images/edits", headers={"origin": "https://evil.example"},
              files={"image": ("a.png", b"x")})
    assert _error(r, 403)["code"] == "invalid_origin"
    same_site = _call(app, "POST", "/v1/images/generations", json={},
                      headers={"origin": "http://127.0.0.1:8000"})
    assert _error(same_site, 400)["param"] == "prompt"


def test_a_public_bind_answers_any_host_unless_configured(tmp_path: Path) -> None:
    open_app = _app(tmp_path, host="0.0.0.0")
    assert _call(open_app, "GET", "/v1/models", host="anything.example", headers=KEY
                 ).status_code == 200
    pinned = _app(tmp_path, host="0.0.0.0", allowed_hosts="easel.example.com")
    assert _error(_call(pinned, "GET", "/v1/models", host="127.0.0.1:8000", headers=KEY),
                  400)["code"] == "invalid_host"
    assert _call(pinned, "GET", "/v1/models", host="easel.example.com", headers=KEY
                 ).status_code == 200


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonx"])
def test_json_routes_refuse_other_content_types(tmp_path: Path, ctype: str | None) -> None:
    headers = {**KEY, **({"content-type": ctype} if ctype else {})}
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", headers=headers,
              content=b'{"prompt": "a red circle", "n": 1}')
    if ctype is None:
        assert "content-type" not in r.request.headers
    assert _error(r, 415)["code"] == "unsupported_media_type"


def test_json_with_parameters_is_json(tmp_path: Path) -> None:
    for ctype in ("application/json; charset=utf-8", "Application/JSON"):
        r = _call(_app(tmp_path), "POST", "/v1/images/generations", content=b'{"n": 1}',
                  headers={**KEY, "content-type": ctype})
        assert _error(r, 400)["param"] == "prompt"  # got past the type check to validation


@pytest.mark.parametrize("param", ["n", "seed", "steps", "output_compression", "partial_images"])
def test_a_5000_digit_integer_is_a_400_naming_it(tmp_path: Path, param: str) -> None:
    body = b'{"prompt": "a red circle", "%s": %s}' % (param.encode(), b"9" * 5000)
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", content=body,
              headers={**KEY, **JSON})
    assert _error(r, 400)["param"] == param
    negative = body.replace(b": 9", b": -9")
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", content=negative,
              headers={**KEY, **JSON})
    assert _error(r, 400)["param"] == param


def test_a_5000_digit_content_length_is_413(tmp_path: Path) -> None:
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", content=b"{}",
              headers={**KEY, **JSON, "content-length": "9" * 5000})
    assert _error(r, 413)["code"] == "request_too_large"


@pytest.mark.parametrize("param", ["prompt", "negative_prompt", "user", "model", "size"])
def test_unpaired_surrogates_are_a_400_naming_the_field(tmp_path: Path, param: str) -> None:
    body = {"prompt": "a red circle", param: "a red \\ud800 circle"}
    raw = ("{" + ", ".join(f'"{k}": "{v}"' for k, v in body.items()) + "}").encode()
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", content=raw,
              headers={**KEY, **JSON})
    error = _error(r, 400)
    assert (error["param"], error["code"]) == (param, "invalid_value")


def test_an_unpaired_surrogate_in_a_field_name_still_gets_an_envelope(tmp_path: Path) -> None:
    r = _call(_app(tmp_path), "POST", "/v1/images/generations", headers={**KEY, **JSON},
              content=b'{"prompt": "a red circle", "\\udfff": 1}')
    assert _error(r, 400)["code"] == "unknown_parameter"


@pytest.mark.parametrize("path", ["/files/images/" + "a" * 300 + ".png",
                                  "/files/images/" + "é" * 200 + ".png",  # 400 bytes
                                  "/static/" + "a" * 300 + ".js"])
def test_path_components_too_long_for_the_filesystem_are_404(tmp_path: Path, path: str) -> None:
    # The folder exists, so the OS reports the name as too long (not merely missing).
    (tmp_path / "files" / "images").mkdir(parents=True)
    r = _call(_app(tmp_path), "GET", path)
    assert _error(r, 404)["code"] == "not_found"


def test_readyz_keeps_redis_errors_in_the_log(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="easel.gateway"):
        r = _call(_app(tmp_path), "GET", "/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "redis": "unreachable"}
    assert any("127.0.0.1:1" in rec.getMessage() for rec in caplog.records)


def test_docs_load_nothing_from_other_origins(tmp_path: Path) -> None:
    app = _app(tmp_path)
    for page in ("/docs", "/redoc"):
        r = _call(app, "GET", page)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset, ctype in (("swagger-ui-bundle.js", "text/javascript"),
                         ("swagger-ui.css", "text/css"), ("redoc.standalone.js", "text/javascript"),
                         ("favicon.png", "image/png")):
        r = _call(app, "GET", f"/docs/assets/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
        assert len(r.content) > 1000
        assert f"/docs/assets/{asset}" in _call(app, "GET", "/docs").text + _call(
            app, "GET", "/redoc").text
    for bad in ("../static/style.css", "core.py", "%2e%2e%2fstatic%2fstyle.css"):
        assert _call(app, "GET", f"/docs/assets/{bad}").status_code == 404


def _generation_scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope of a JSON POST to /v1/images/generations from 127.0.0.1."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/images/generations", "raw_path": b"",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        *headers]}


def test_a_client_hanging_up_mid_body_is_not_an_error(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    app = _app(tmp_path, auth="off")
    messages = [{"type": "http.request", "body": b'{"prompt": "a red', "more_body": True},
                {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _generation_scope((b"content-length", b"100"))
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert 500 not in statuses


def test_a_body_that_never_finishes_is_cut_off(tmp_path: Path) -> None:
    app = _app(tmp_path, auth="off", body_timeout_seconds=0.3)
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b'{"prompt"', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes, and the client never hangs up
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _generation_scope()

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), 5)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]


def test_auth_off_on_a_public_bind_must_be_forced(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="EASEL_ALLOW_NO_AUTH_PUBLIC"):
        _app(tmp_path, auth="off", host="0.0.0.0")
    _app(tmp_path, auth="off", host="0.0.0.0", allow_no_auth_public=True)
    _app(tmp_path, auth="off", host="::1")


def test_easel_up_refuses_auth_off_on_a_public_bind(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.stack import Stack, StackOptions

    for name in ("EASEL_API_KEYS", "EASEL_AUTH", "EASEL_ALLOW_NO_AUTH_PUBLIC"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="--insecure-no-auth"):
        Stack(StackOptions(host="0.0.0.0"))._env("redis://x", tmp_path)
    env = Stack(StackOptions(host="0.0.0.0", insecure_no_auth=True))._env("redis://x", tmp_path)
    assert (env["EASEL_AUTH"], env["EASEL_ALLOW_NO_AUTH_PUBLIC"]) == ("off", "1")
    assert Stack(StackOptions(host="127.0.0.1"))._env("redis://x", tmp_path)["EASEL_AUTH"] == "off"
    monkeypatch.setenv("EASEL_ALLOW_NO_AUTH_PUBLIC", "1")
    assert Stack(StackOptions(host="0.0.0.0"))._env("redis://x", tmp_path)["EASEL_AUTH"] == "off"
    monkeypatch.delenv("EASEL_ALLOW_NO_AUTH_PUBLIC")
    monkeypatch.setenv("EASEL_API_KEYS", f"k:{hash_key('sk')}")
    assert "EASEL_AUTH" not in Stack(StackOptions(host="0.0.0.0"))._env("redis://x", tmp_path)
