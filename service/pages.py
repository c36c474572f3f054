"""The playground page: `/` serves index.html, `/static/{file}` the page's own JS and CSS.

Only plain files directly inside service/static are served (no sub-folders, no `..`), with a
Content-Security-Policy that lets the page talk to this origin only: it never loads anything
from the internet, and images arrive as b64_json (data: URLs) or blob: URLs made in the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from core.errors import OpenAIError

pages = APIRouter()
STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
         ".ico": "image/x-icon"}
HEADERS = {
    "Cache-Control": "no-cache",  # revalidate, so an upgraded server never runs stale JS
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                "frame-ancestors 'none'; form-action 'self'"),
}


def _not_found() -> OpenAIError:
    return OpenAIError(404, "Not found.", code="not_found")


def static_path(name: str) -> Path:
    """The file `name` inside STATIC, or a 404 for anything else (traversal, dotfiles, types)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise _not_found()
    try:  # a name the filesystem refuses (too long: ENAMETOOLONG, ...) is simply not there
        path = (STATIC / name).resolve()
        if path.parent != STATIC or path.suffix not in TYPES or not path.is_file():
            raise _not_found()
    except OSError as exc:
        raise _not_found() from exc
    return path


def _file(name: str) -> FileResponse:
    path = static_path(name)
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)


@pages.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return _file("index.html")


@pages.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    return _file(name)
