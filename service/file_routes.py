"""`/v1/files`: OpenAI's Files API on Easel's storage; each route parses, calls the store and
answers.  The key that uploaded a file is its owner: other keys get 404."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from core.errors import bad_request
from service.auth import require_key
from service.file_uploads import file_object_list, read_file_upload
from service.files import FileStore

files_router = APIRouter(dependencies=[Depends(require_key)])
LIST_PARAMS = {"purpose", "limit", "after", "order"}


def owner_of(request: Request) -> str:
    """The API key's name; with auth off every caller is the same owner, ""."""
    return getattr(request.state, "key_name", None) or ""


def _store(request: Request) -> FileStore:
    store: FileStore = request.app.state.files
    return store


def page_params(request: Request, allowed: set[str], most: int,
                default: int) -> tuple[int, str | None]:
    """`limit` and `after` of a list route, checked like a body's fields (400 naming them)."""
    query = request.query_params
    for name in query:
        if name not in allowed:
            raise bad_request(f"Unrecognized query parameter: {name[:40]}", name[:40],
                              "unknown_parameter")
    raw = query.get("limit")
    if raw is not None and not (raw.isdigit() and len(raw) < 7 and 1 <= int(raw) <= most):
        raise bad_request(f"Invalid 'limit': give a whole number from 1 to {most}.", "limit",
                          "invalid_value")
    return int(raw) if raw is not None else default, query.get("after") or None


@files_router.post("/v1/files")
async def upload_file(request: Request) -> dict[str, object]:
    settings = request.app.state.settings
    upload = await read_file_upload(request, settings.files_max_bytes,
                                    settings.files_ttl_seconds)
    try:
        stored = await _store(request).add(owner_of(request), upload.filename, upload.purpose,
                                           upload.file, upload.size, upload.expires_after)
    finally:
        await upload.form.close()
    return stored.public()


@files_router.get("/v1/files")
async def list_files(request: Request) -> dict[str, object]:
    limit, after = page_params(request, LIST_PARAMS, 10_000, 10_000)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("Invalid 'order': 'asc' or 'desc'.", "order", "invalid_value")
    files, more = await _store(request).list(
        owner_of(request), purpose=request.query_params.get("purpose"), limit=limit,
        after=after, descending=order == "desc")
    return file_object_list(files, more)


@files_router.get("/v1/files/{file_id}")
async def retrieve_file(request: Request, file_id: str) -> dict[str, object]:
    return (await _store(request).get(owner_of(request), file_id)).public()


@files_router.get("/v1/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    stored, chunks = await _store(request).chunks(owner_of(request), file_id)
    # Never rendered by a browser as a page of this origin: a download, typed as stored.
    media = "application/jsonl" if stored.purpose.startswith("batch") else \
        "application/octet-stream"
    return StreamingResponse(chunks, media_type=media, headers={
        "Content-Length": str(stored.bytes), "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "attachment", "Cache-Control": "private, no-store"})


@files_router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, object]:
    await _store(request).delete(owner_of(request), file_id)
    return {"id": file_id, "object": "file", "deleted": True}
