"""/docs (Swagger UI) and /redoc from files installed with the gateway, never from a CDN.

FastAPI's own pages load their JavaScript from a CDN with no integrity check, so whoever serves
that file runs code in the page of anyone reading the docs.  The `fastapi-offline` package ships
Swagger UI and ReDoc bundles; only those named files are served, with a CSP limiting the pages
to this origin.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from core.errors import OpenAIError

docs = APIRouter(include_in_schema=False)
ASSETS_URL = "/docs/assets"
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger-ui.css": "text/css; charset=utf-8",
          "redoc.standalone.js": "text/javascript; charset=utf-8",
          "favicon.png": "image/png"}
# Swagger UI starts from an inline script and both UIs set inline styles; ReDoc runs a worker.
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "worker-src 'self' blob:; connect-src 'self'; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
}


def assets_dir() -> Path:
    """fastapi-offline's static folder, found without importing the package (no side effects)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the fastapi-offline package (Swagger UI and ReDoc files) is missing")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(HEADERS)
    return response


@docs.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    return _page(get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png"))


@docs.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(get_redoc_html(
        openapi_url=request.app.openapi_url, title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False))


@docs.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:  # a fixed list: no path from the client reaches the filesystem
        raise OpenAIError(404, "Not found.", code="not_found")
    return FileResponse(assets_dir() / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400", **HEADERS})
