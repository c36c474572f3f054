"""`POST /v1/files`'s multipart body, parsed as it streams in.

The file part is spooled to a temporary file on disk past 1 MB (Starlette's parser), never
held whole in memory, and the body is cut off with a 413 as soon as it passes the size limit
(the SDKs may stream with no Content-Length).  The other parts are small text fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from core.errors import bad_request
from core.storage import sniff
from service.bodies import too_large

UPLOAD_PURPOSES = ("batch", "vision", "user_data")
FIELDS = {"purpose", "expires_after[anchor]", "expires_after[seconds]"}
FORM_OVERHEAD = 64 * 1024  # part headers and the text fields around the file


@dataclass
class FileUpload:
    purpose: str
    filename: str
    size: int
    file: IO[bytes]
    expires_after: int | None
    form: FormData  # closed by the caller once the file is stored (removes the spool file)


def _limited(request: Request, limit: int) -> Request:
    """The request with a receive that refuses the body past `limit` bytes."""
    seen = 0

    async def receive() -> Message:
        nonlocal seen
        message = await request.receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return Request(request.scope, receive)


def _expires_after(fields: dict[str, str], max_seconds: int) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise bad_request("Invalid 'expires_after[anchor]': the only anchor is 'created_at'.",
                          "expires_after[anchor]", "invalid_value")
    if seconds is None or not seconds.isdigit() or len(seconds) > 12 \
            or not 1 <= int(seconds) <= max_seconds:
        raise bad_request(f"Invalid 'expires_after[seconds]': give a whole number of seconds "
                          f"from 1 to {max_seconds}.", "expires_after[seconds]", "invalid_value")
    return int(seconds)


def _check(purpose: str, upload: UploadFile, head: bytes) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(f"Invalid 'purpose': {purpose[:40]!r}. Easel accepts "
                          f"{', '.join(UPLOAD_PURPOSES)}.", "purpose", "invalid_value")
    if not upload.size:
        raise bad_request("The file is empty.", "file", "invalid_file")
    if purpose == "vision" and sniff(head) is None:
        raise bad_request("Invalid 'file': purpose 'vision' takes a PNG, JPEG or WebP image.",
                          "file", "invalid_image_format")


async def read_file_upload(request: Request, max_bytes: int, max_seconds: int) -> FileUpload:
    """The upload, spooled; a 400 naming the field for anything missing or unknown."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("POST /v1/files expects multipart/form-data with 'file' and "
                          "'purpose'.", None, "invalid_content_type")
    limit = max_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large(limit)
    try:
        form = await _limited(request, limit).form(max_files=1, max_fields=8,
                                                   max_part_size=4096)
    except Exception as exc:
        if getattr(exc, "status", None) in (408, 413):  # our own limits, raised from receive
            raise
        raise bad_request(f"Could not parse the multipart body: {getattr(exc, 'detail', exc)}",
                          None, "invalid_multipart") from exc
    try:
        return _read(form, max_bytes, max_seconds)
    except BaseException:
        await form.close()
        raise


def _read(form: FormData, max_bytes: int, max_seconds: int) -> FileUpload:
    fields: dict[str, str] = {}
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "file":
                raise bad_request(f"Unexpected file part '{name[:40]}'.", name[:40],
                                  "unknown_parameter")
            upload = value
        elif name in FIELDS:
            fields[name] = value
        else:
            raise bad_request(f"Unrecognized request argument supplied: {name[:40]}",
                              name[:40], "unknown_parameter")
    if upload is None:
        raise bad_request("You must provide 'file' (a file part).", "file",
                          "missing_required_parameter")
    if "purpose" not in fields:
        raise bad_request("You must provide 'purpose'.", "purpose", "missing_required_parameter")
    if (upload.size or 0) > max_bytes:
        raise bad_request(f"'file' is larger than the {max_bytes} bytes allowed.", "file",
                          "file_too_large")
    upload.file.seek(0)
    head = upload.file.read(16)
    upload.file.seek(0)
    _check(fields["purpose"], upload, head)
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:255] or "upload"
    return FileUpload(fields["purpose"], name, upload.size or 0, upload.file,
                      _expires_after(fields, max_seconds), form)


def file_object_list(files: list[Any], has_more: bool) -> dict[str, Any]:
    data = [f.public() for f in files]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
