"""`/v1/batches`: OpenAI's Batch API over the Files API and the background runner.  A batch
is created `validating`; the batch driver (service.batch_driver) does the rest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from core.errors import OpenAIError, bad_request
from service.auth import require_key
from service.batch_lines import ENDPOINTS
from service.batches import BatchStore
from service.bodies import read_json
from service.file_routes import owner_of, page_params
from service.hosts import public_base

batches_router = APIRouter(dependencies=[Depends(require_key)])
CREATE_FIELDS = {"input_file_id", "endpoint", "completion_window", "metadata",
                 "output_expires_after"}


def _store(request: Request) -> BatchStore:
    store: BatchStore = request.app.state.batches
    return store


def _metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's limits: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in value.items()):
        raise bad_request("Invalid 'metadata': at most 16 string pairs, keys of up to 64 "
                          "characters and values of up to 512.", "metadata", "invalid_value")
    return value


def _output_expiry(value: Any, most: int) -> int | None:
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if not isinstance(value, dict) or set(value) - {"anchor", "seconds"} \
            or value.get("anchor") != "created_at" or type(seconds) is not int \
            or not 1 <= seconds <= most:
        raise bad_request(f"Invalid 'output_expires_after': give {{\"anchor\": \"created_at\", "
                          f"\"seconds\": 1 to {most}}}.", "output_expires_after",
                          "invalid_value")
    return seconds


@batches_router.post("/v1/batches")
async def create_batch(request: Request) -> dict[str, Any]:
    st = request.app.state
    body = await read_json(request, st.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.", None, "invalid_type")
    for name in body:
        if name not in CREATE_FIELDS:
            raise bad_request(f"Unrecognized request argument supplied: {str(name)[:40]}",
                              str(name)[:40], "unknown_parameter")
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request("You must provide 'input_file_id'.", "input_file_id",
                          "missing_required_parameter")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise bad_request(f"Invalid 'endpoint': Easel batches {' and '.join(ENDPOINTS)}.",
                          "endpoint", "invalid_value")
    if body.get("completion_window") != "24h":
        raise bad_request("Invalid 'completion_window': the only window is '24h'.",
                          "completion_window", "invalid_value")
    metadata = _metadata(body.get("metadata"))
    keep = _output_expiry(body.get("output_expires_after"), st.settings.files_ttl_seconds)
    owner = owner_of(request)
    stored = await st.files.get(owner, file_id, "input_file_id")
    if stored.purpose != "batch":
        raise bad_request(f"Invalid 'input_file_id': the file's purpose is "
                          f"'{stored.purpose}', not 'batch'.", "input_file_id", "invalid_value")
    store = _store(request)
    batch_id = await store.create(owner, endpoint, file_id, metadata,
                                  st.settings.batch_window_seconds, keep, public_base(request))
    return await store.public(await store.owned(owner, batch_id))


@batches_router.get("/v1/batches")
async def list_batches(request: Request) -> dict[str, Any]:
    limit, after = page_params(request, {"limit", "after"}, 100, 20)
    store = _store(request)
    found, more = await store.page(owner_of(request), after, limit)
    data = [await store.public(fields) for fields in found]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


@batches_router.get("/v1/batches/{batch_id}")
async def retrieve_batch(request: Request, batch_id: str) -> dict[str, Any]:
    store = _store(request)
    return await store.public(await store.owned(owner_of(request), batch_id))


@batches_router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> dict[str, Any]:
    """Stops handing lines over and cancels the queued ones; the batch ends `cancelled` with
    what had completed (the driver finishes it)."""
    store, owner = _store(request), owner_of(request)
    fields = await store.owned(owner, batch_id)
    if fields["status"] in ("completed", "failed", "expired"):
        raise OpenAIError(409, f"Cannot cancel a batch with status '{fields['status']}'.",
                          "invalid_request_error", "batch_id", "batch_not_cancellable")
    await store.move(batch_id, ("validating", "in_progress"), "cancelling")
    return await store.public(await store.owned(owner, batch_id))
