"""HTTP routes: each parses, calls one serving method and returns.  Logic lives elsewhere."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from core.catalog import Catalog, ModelSpec
from core.errors import OpenAIError, model_not_found
from core.jobs import is_result_key
from core.liveness import Fleet
from core.rules import MAX_BEST_OF, Operation
from core.storage import LocalStorage, StorageError
from service.auth import require_key
from service.bodies import is_json, read_json
from service.hosts import public_base
from service.job_routes import submit_json, submit_upload, wants_async
from service.queue import workers_per_pipeline
from service.serving import RequestContext
from service.uploads import read_upload

router = APIRouter()
v1 = APIRouter(dependencies=[Depends(require_key)])  # every /v1 route needs a key (auth on)
log = logging.getLogger("easel.gateway")
STATIC = Path(__file__).resolve().parent / "static"


def _state(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state


def _answer(result: dict[str, object] | Response) -> Response:
    return result if isinstance(result, Response) else JSONResponse(result)


def _context(request: Request) -> RequestContext:
    async def disconnected() -> None:
        # The body is already read, so the next ASGI message is the client hanging up.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    ctx = RequestContext(request.state.request_id, getattr(request.state, "key_name", None),
                         disconnected)
    request.state.ctx = ctx  # the metrics middleware reads the model from it
    return ctx


@v1.post("/v1/images/generations")
async def generations(request: Request) -> Response:
    st = _state(request)
    body = await read_json(request, st.settings.max_body_bytes)
    if wants_async(request):  # 202 with a job (service/job_routes.py)
        return await submit_json(request, "/v1/images/generations", body)
    return _answer(await st.images.generate(body, public_base(request), _context(request)))


async def _transform(request: Request, kind: Operation) -> Response:
    st = _state(request)
    upload = await read_upload(request, st.settings.max_upload_bytes, st.settings.max_file_bytes)
    if wants_async(request):
        return await submit_upload(request, kind, upload)
    return _answer(await st.images.transform(kind, upload, public_base(request),
                                             _context(request)))


@v1.post("/v1/images/edits")
async def edits(request: Request) -> Response:
    if is_json(request):  # images by URL: {"images": [{"image_url": ...}], ...}
        st = _state(request)
        body = await read_json(request, st.settings.max_upload_bytes)
        if wants_async(request):
            return await submit_json(request, "/v1/images/edits", body)
        return _answer(await st.images.edit_json(body, public_base(request), _context(request)))
    return await _transform(request, "edit")


@v1.post("/v1/images/variations")
async def variations(request: Request) -> Response:
    return await _transform(request, "variation")


def _model_object(catalog: Catalog, model: ModelSpec, workers: int | None,
                  failed_adapters: dict[str, dict[str, str]] | None = None) -> dict[str, object]:
    """`failed_adapters`: pipeline -> adapter -> why a live worker could not load it (such an
    adapter is listed with that `error`; the playground leaves it out)."""
    failed = (failed_adapters or {}).get(model.pipeline, {})
    obj: dict[str, object] = {"id": model.id, "object": "model", "created": model.created,
                              "owned_by": "easel"}
    if workers is not None:  # Easel extension: how many live workers serve it right now
        obj["workers"] = workers
    # Easel extension: the request rules this id follows (the playground builds its form from
    # them); the same data validation and /openapi.json use.
    obj["easel"] = {"family": model.family.name, "pipeline": model.pipeline,
                    "description": model.description,
                    "max_steps": catalog.pipeline_of(model).max_steps,
                    "schedulers": list(catalog.pipeline_of(model).schedulers),
                    # `best_of` (generations): candidates per image by default, and at most;
                    # null when the pipeline has no scorer to rank them.
                    "best_of": {"default": catalog.pipeline_of(model).best_of,
                                "max": MAX_BEST_OF} if catalog.pipeline_of(model).scorer
                    else None,
                    "adapters": [{"name": a.name, "scale": a.scale,
                                  "description": a.description,
                                  **({"error": failed[a.name]} if a.name in failed else {})}
                                 for a in catalog.adapters_of(model.pipeline)],
                    "rules": catalog.rules_of(model).model_dump(mode="json")}
    return obj


async def _fleet(request: Request) -> Fleet | None:
    """One read of the workers' heartbeats; None when Redis cannot say (the list still
    answers, without live counts)."""
    try:
        return await run_in_threadpool(_state(request).queue.fleet)
    except (RedisError, OSError):
        return None


@v1.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """The catalog's models, less those whose pipeline was unloaded through the admin API
    (until it is loaded again: docs/models.md)."""
    catalog = _state(request).catalog
    fleet = await _fleet(request)
    served = workers_per_pipeline(fleet, catalog) if fleet else {}
    unloaded = fleet.unloaded() if fleet and not all(served.values()) else {}
    failed = fleet.adapter_failures() if fleet else {}
    return {"object": "list", "data": [_model_object(catalog, m, served.get(m.pipeline), failed)
                                       for m in catalog.models.values()
                                       if m.pipeline not in unloaded]}


@v1.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> dict[str, object]:
    catalog = _state(request).catalog
    model = catalog.model(model_id)
    if model is None:
        raise model_not_found(model_id)
    fleet = await _fleet(request)
    served = workers_per_pipeline(fleet, catalog) if fleet else {}
    return _model_object(catalog, model, served.get(model.pipeline),
                         fleet.adapter_failures() if fleet else {})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when Redis answers and every pipeline has at least one live worker; "degraded"
    (still 200) when the others failed to load, "failed" (503) when all did.  Pipelines
    unloaded through the admin API are listed under "unloaded" and wait for nobody; with none
    of the catalog served at all, the status is "unloaded" (503).  LoRA adapters a worker
    failed to load are listed under "failed_adapters" (pipeline -> adapter -> why) and leave
    the status as it is: their pipeline and its other adapters still serve."""
    st = _state(request)
    try:
        await st.redis.ping()
        fleet = await run_in_threadpool(st.queue.fleet)
    except (RedisError, OSError) as exc:
        # The error text names hosts, ports and versions: the log gets it, the public does not.
        log.warning("readiness: Redis unreachable: %s", exc)
        return JSONResponse({"status": "unavailable", "redis": "unreachable"}, 503)
    workers = workers_per_pipeline(fleet, st.catalog)
    failures, dropped, adapters = fleet.load_failures(), fleet.unloaded(), fleet.adapter_failures()
    failed = {p: failures[p] for p, n in workers.items() if n == 0 and p in failures}
    unloaded = sorted(p for p, n in workers.items() if n == 0 and p in dropped and p not in failed)
    waiting = [p for p, n in workers.items() if n == 0 and p not in failed and p not in unloaded]
    served = any(n > 0 for n in workers.values())
    status = ("waiting for workers" if waiting else
              ("failed" if failed else "unloaded") if not served
              else "degraded" if failed else "ready")
    body: dict[str, Any] = {"status": status, "redis": "ok", "workers": workers}
    if failed:
        body["failed"] = failed
    if unloaded:
        body["unloaded"] = unloaded
    if adapters:
        body["failed_adapters"] = adapters
    return JSONResponse(body, 200 if status in ("ready", "degraded") else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry = _state(request).metrics.exposition  # all processes' sums (metrics.py)
    return PlainTextResponse(await run_in_threadpool(generate_latest, registry),
                             media_type=CONTENT_TYPE_LATEST)


@router.get("/files/{key:path}")
async def files(request: Request, key: str) -> Response:
    """Locally stored results; the random job id in the key is what keeps URLs private.
    Uploaded inputs and streaming previews are never served, whatever their key."""
    storage = _state(request).storage
    if not isinstance(storage, LocalStorage) or not is_result_key(key):
        raise OpenAIError(404, "Not found.", code="not_found")
    try:
        path = storage.path(key)
    except StorageError as exc:
        raise OpenAIError(404, "Not found.", code="not_found") from exc
    try:  # a name the filesystem refuses (too long: ENAMETOOLONG, ...) is simply not there
        if not path.is_file() or storage.root not in path.resolve().parents:
            raise OpenAIError(404, "Not found.", code="not_found")
        modified = path.stat().st_mtime
    except OSError as exc:
        raise OpenAIError(404, "Not found.", code="not_found") from exc
    if time.time() - modified > _state(request).settings.url_ttl_seconds:
        raise OpenAIError(404, "This image URL has expired.", code="expired")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
