"""Background jobs over HTTP: `Prefer: respond-async` on the image routes, and
GET/DELETE /v1/images/jobs/{id}.  A job is visible to the API key that submitted it only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from core.errors import OpenAIError, bad_request
from core.rules import Operation
from service.auth import require_key
from service.background import BackgroundJobs
from service.hosts import public_base
from service.job_store import EDITS, GENERATIONS, VARIATIONS, JobRecord
from service.uploads import Uploaded
from service.validation import parse_json_edit, parse_request

jobs_router = APIRouter(dependencies=[Depends(require_key)])


def wants_async(request: Request) -> bool:
    """RFC 7240: `Prefer: respond-async` (among other preferences, any case)."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            if preference.split(";")[0].split("=")[0].strip().lower() == "respond-async":
                return True
    return False


def job_object(record: JobRecord, position: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": record.id, "object": "image.job", "endpoint": record.endpoint,
        "status": record.status, "priority": record.priority, "batch_id": record.batch_id,
        "created_at": record.created_at, "finished_at": record.finished_at,
        "queue_position": position, "status_code": record.status_code}
    if record.status == "completed":
        obj["result"] = record.body
    elif record.status == "failed" and record.body is not None:
        obj["error"] = record.body.get("error")
    return obj


def _owner(request: Request) -> str | None:
    return getattr(request.state, "key_name", None)


def _refuse_stream(stream: bool) -> None:
    if stream:
        raise bad_request("'stream' cannot be used with 'Prefer: respond-async': a background "
                          "job's answer is read from GET /v1/images/jobs/{id}.", "stream",
                          "unsupported_parameter")


async def _accepted(request: Request, record: JobRecord) -> JSONResponse:
    jobs: BackgroundJobs = request.app.state.background
    return JSONResponse(job_object(record, await jobs.queue_position(record)), 202,
                        headers={"Location": f"/v1/images/jobs/{record.id}",
                                 "Preference-Applied": "respond-async"})


async def _charge(request: Request) -> None:
    """The submit counts against the key's per-minute rate, as a synchronous request would;
    its render is admitted later (service.job_runner)."""
    await request.app.state.images.dispatcher.admission.charge(_owner(request))


async def submit_json(request: Request, endpoint: str, body: Any) -> JSONResponse:
    """Validate like the synchronous route, then answer 202 with the queued job."""
    catalog = request.app.state.catalog
    if endpoint == GENERATIONS:
        params = parse_request(body, catalog, "generate")
    else:
        params = parse_json_edit(body, catalog)[0]
    _refuse_stream(params.stream)
    await _charge(request)
    record = await request.app.state.background.submit(
        owner=_owner(request), endpoint=endpoint, body=body, base_url=public_base(request))
    return await _accepted(request, record)


async def submit_upload(request: Request, kind: Operation, upload: Uploaded) -> JSONResponse:
    """A multipart edit or variation: its files are kept privately until the job has run."""
    params = parse_request(upload.fields, request.app.state.catalog, kind, form=True)
    _refuse_stream(params.stream)
    await _charge(request)
    jobs: BackgroundJobs = request.app.state.background
    stored = await jobs.store_upload(upload)
    record = await jobs.submit(owner=_owner(request),
                               endpoint=EDITS if kind == "edit" else VARIATIONS, body=stored,
                               base_url=public_base(request), multipart=True)
    return await _accepted(request, record)


async def _own(request: Request, job_id: str) -> JobRecord:
    record = await request.app.state.background.get(job_id)
    if record is None or record.owner != _owner(request):  # another key's job is not there
        raise OpenAIError(404, f"No background job found with id '{job_id[:80]}'.",
                          "invalid_request_error", "job_id", "not_found")
    return record


@jobs_router.get("/v1/images/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> JSONResponse:
    record = await _own(request, job_id)
    position = await request.app.state.background.queue_position(record)
    return JSONResponse(job_object(record, position))


@jobs_router.delete("/v1/images/jobs/{job_id}")
async def cancel_job(request: Request, job_id: str) -> JSONResponse:
    """Cancels a job no worker has started; a finished job is returned as it is."""
    await _own(request, job_id)
    record = await request.app.state.background.cancel(job_id)
    if record is None:
        raise OpenAIError(404, f"No background job found with id '{job_id[:80]}'.",
                          "invalid_request_error", "job_id", "not_found")
    if record.status in ("queued", "in_progress"):
        raise OpenAIError(409, f"Job '{record.id}' is already rendering and cannot be "
                          "cancelled.", "invalid_request_error", None, "job_not_cancellable")
    return JSONResponse(job_object(record))
