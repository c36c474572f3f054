"""Read request bodies with limits enforced while reading (clients may stream with no length)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from core.errors import OpenAIError, bad_request


def too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than the {limit} bytes allowed.",
                       "invalid_request_error", None, "request_too_large")


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    raw = await read_limited(request, limit)
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", None, "invalid_json")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None, "invalid_json") from exc
