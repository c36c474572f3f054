"""Read request bodies with limits enforced while reading (clients may stream with no length)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from core.errors import OpenAIError, bad_request
from service.validation import parse_int


def too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than the {limit} bytes allowed.",
                       "invalid_request_error", None, "request_too_large")


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    # A length of more digits than any limit is too large without converting it (int() of
    # 4300+ digits raises ValueError).
    if declared and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media == "application/json"


def require_json(request: Request) -> None:
    """415 unless the body is declared JSON: a cross-site form or fetch may send text/plain
    (or no type) without a CORS preflight, application/json needs one."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not is_json(request):
        shown = media[:60] or "none"
        raise OpenAIError(415, f"Unsupported Content-Type '{shown}': send the body as JSON with "
                          "'Content-Type: application/json'.", "invalid_request_error", None,
                          "unsupported_media_type")


async def read_json(request: Request, limit: int) -> Any:
    require_json(request)
    raw = await read_limited(request, limit)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", None, "invalid_json")
    try:
        return json.loads(raw, parse_int=parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None, "invalid_json") from exc
