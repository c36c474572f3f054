"""The playground page: `/` serves index.html, `/static/{file}` its CSS, `/static/js/{file}` its
JavaScript modules (loaded by `<script type="module">`, no build step).

Only plain files directly inside service/static or service/static/js are served (no other
folders, no `..`), with a
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
MODULES = STATIC / "js"
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


def static_path(name: str, folder: Path = STATIC, suffixes: frozenset[str] = frozenset(TYPES),
                ) -> Path:
    """The file `name` directly inside `folder` with one of `suffixes`, or a 404 for anything
    else (traversal, dotfiles, other types)."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise _not_found()
    try:  # a name the filesystem refuses (too long: ENAMETOOLONG, ...) is simply not there
        path = (folder / name).resolve()
        if path.parent != folder or path.suffix not in suffixes or not path.is_file():
            raise _not_found()
    except OSError as exc:
        raise _not_found() from exc
    return path


def _file(name: str, folder: Path = STATIC, suffixes: frozenset[str] = frozenset(TYPES),
          ) -> FileResponse:
    path = static_path(name, folder, suffixes)
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)


@pages.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return _file("index.html")


@pages.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    return _file(name)


@pages.get("/static/js/{name}", include_in_schema=False)
async def module(name: str) -> FileResponse:
    return _file(name, MODULES, frozenset({".js"}))
