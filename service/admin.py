"""The admin API: which pipelines each worker holds; load, unload; reload the catalog.

Only keys named in EASEL_ADMIN_KEYS may call it (403 for other keys, 401 without one), and it is
closed while EASEL_AUTH=off.  Commands go to workers over Redis (core/control.py); the worker's
control thread runs them beside its rendering (workers/control.py).  docs/models.md documents
the routes and what /v1/models and /readyz show meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError
from redis import Redis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from core import control, liveness
from core.catalog import Catalog, CatalogError, load_catalog
from core.errors import OpenAIError, bad_request, unavailable
from service.auth import require_key
from service.bodies import read_json
from service.openapi import install as install_openapi

log = logging.getLogger("easel.gateway")


async def require_admin(request: Request) -> None:
    """After require_key: the key must be one of EASEL_ADMIN_KEYS (least privilege)."""
    st = request.app.state
    if st.keys is None:
        raise OpenAIError(403, "The admin API is closed while EASEL_AUTH=off: set EASEL_API_KEYS "
                          "and name admin keys in EASEL_ADMIN_KEYS.", code="admin_disabled")
    if getattr(request.state, "key_name", None) not in st.settings.admin_key_names():
        raise OpenAIError(403, "This API key may not use the admin API (EASEL_ADMIN_KEYS).",
                          code="insufficient_permissions")


admin = APIRouter(dependencies=[Depends(require_key), Depends(require_admin)])


class Target(BaseModel):
    """Optional body of load and unload: one worker by name (GET /v1/admin/workers)."""

    model_config = ConfigDict(extra="forbid")
    worker: str | None = None


def _workers(request: Request) -> dict[str, dict[str, Any]]:
    return liveness.live_workers(request.app.state.queue.redis)


def _send(request: Request, worker: str, command: control.Command) -> control.Reply:
    """One command to one worker, on a client whose socket outlasts the wait."""
    st = request.app.state
    wait = st.settings.admin_timeout_seconds
    client = Redis.from_url(st.settings.redis_url, socket_timeout=wait + 10,
                            socket_connect_timeout=3)
    try:
        reply = control.send(client, worker, command, wait)
    finally:
        client.close()
    if reply is None:
        raise unavailable(f"Worker {worker} did not answer within {wait:g} s "
                          "(EASEL_ADMIN_TIMEOUT_SECONDS).", retry_after=10)
    return reply


async def _target(request: Request) -> str | None:
    if not int(request.headers.get("content-length") or 0):
        return None
    body = await read_json(request, 4096)
    try:
        return Target.model_validate(body).worker
    except ValidationError as exc:
        raise bad_request("The body may only name a 'worker' (a string).", "worker",
                          "invalid_value") from exc


def _state_of(info: dict[str, Any], pipeline: str) -> str:
    return str((info.get("pipelines") or {}).get(pipeline, {}).get("state", ""))


def choose(workers: dict[str, dict[str, Any]], op: str, pipeline: str) -> list[str]:
    """The workers an unnamed command goes to. Unload: every one holding `pipeline`. Load: one
    holding it, else one that unloaded it or failed to load it (configured for it: the fixed
    checkpoint is on its disk), else the one holding the fewest pipelines."""
    if op == "unload":
        return [w for w, i in workers.items() if _state_of(i, pipeline) in ("resident", "asleep")]
    holding = [w for w, i in workers.items() if _state_of(i, pipeline) == "resident"]
    ranked = sorted(workers, key=lambda w: (
        _state_of(workers[w], pipeline) not in ("unloaded", "failed"),
        len(workers[w].get("pipelines") or {})))
    return holding[:1] or ranked[:1]


async def _command(request: Request, op: str, pipeline: str) -> dict[str, Any]:
    st = request.app.state
    if pipeline not in st.catalog.pipelines:
        raise OpenAIError(404, f"Unknown pipeline '{pipeline[:64]}'; the catalog has: "
                          f"{', '.join(st.catalog.pipelines)}.", code="pipeline_not_found")
    named = await _target(request)
    workers = await run_in_threadpool(_workers, request)
    if named is not None and named not in workers:
        raise OpenAIError(404, f"No live worker named '{named[:64]}'.", code="worker_not_found")
    chosen = [named] if named is not None else choose(workers, op, pipeline)
    if not chosen:
        raise unavailable(f"No live worker {'holds' if op == 'unload' else 'can load'} "
                          f"pipeline '{pipeline}'.", retry_after=10)
    command = control.Command(op=op, pipeline=pipeline)  # type: ignore[arg-type]
    results = {}
    for worker in chosen:
        reply = await run_in_threadpool(_send, request, worker, command)
        if not reply.ok:
            raise OpenAIError(409 if op == "unload" else 500, f"Worker {worker}: {reply.error}",
                              "invalid_request_error" if op == "unload" else "server_error",
                              code=f"{op}_failed")
        results[worker] = reply.pipelines
    log.info("admin: %s %s on %s", op, pipeline, ", ".join(chosen),
             extra={"pipeline": pipeline, "key": getattr(request.state, "key_name", None)})
    return {"object": "admin.result", "op": op, "pipeline": pipeline, "workers": results}


@admin.get("/v1/admin/workers")
async def list_workers(request: Request) -> dict[str, Any]:
    """Every live worker: the pipelines it holds (state, load time, bytes, idle seconds,
    adapters), the queues it serves, and the ones that failed to load."""
    try:
        workers = await run_in_threadpool(_workers, request)
    except (RedisError, OSError) as exc:
        raise unavailable("Redis is unreachable; try again shortly.") from exc
    return {"object": "list", "data": [
        {"object": "admin.worker", "id": name, "queues": info.get("queues", []),
         "pipelines": info.get("pipelines") or {}, "failed": info.get("failed") or {},
         "busy": bool(info.get("busy"))} for name, info in workers.items()]}


@admin.post("/v1/admin/pipelines/{pipeline}/load")
async def load(request: Request, pipeline: str) -> dict[str, Any]:
    return await _command(request, "load", pipeline)


@admin.post("/v1/admin/pipelines/{pipeline}/unload")
async def unload(request: Request, pipeline: str) -> dict[str, Any]:
    return await _command(request, "unload", pipeline)


def read_catalog(settings: Any) -> Catalog:
    return (load_catalog(settings.models_file).with_default(settings.default_model)
            .with_extra_images(settings.extra_images))


def install_catalog(app: Any, catalog: Catalog) -> None:
    """Serve `catalog` from now on in this process (requests, /v1/models, /openapi.json)."""
    app.state.catalog = catalog
    app.state.images.catalog = catalog
    app.openapi_schema = None
    install_openapi(app, catalog)


@admin.post("/v1/admin/catalog/reload")
async def reload_catalog(request: Request) -> dict[str, Any]:
    """Read EASEL_MODELS_FILE again, here and on every live worker: new models, adapters and
    pipelines (load those with .../load) without a restart.  A mistaken file changes nothing."""
    st = request.app.state
    try:
        catalog = read_catalog(st.settings)
    except CatalogError as exc:
        raise bad_request(f"The catalog was not reloaded: {exc}", None,
                          "invalid_catalog") from exc
    workers = await run_in_threadpool(_workers, request)
    command = control.Command(op="reload")
    replies = {w: await run_in_threadpool(_send, request, w, command) for w in workers}
    install_catalog(request.app, catalog)
    try:  # the other gateway processes follow (service/catalog_sync.py)
        await st.catalog_sync.announce()
    except (RedisError, OSError) as exc:
        log.warning("admin: could not tell the other gateway processes: %s", exc)
    failed = {w: r.error for w, r in replies.items() if not r.ok}
    log.info("admin: catalog reloaded: %d model(s), %d pipeline(s), %d adapter(s)",
             len(catalog.models), len(catalog.pipelines), len(catalog.adapters))
    return {"object": "admin.result", "op": "reload", "models": list(catalog.models),
            "pipelines": list(catalog.pipelines), "adapters": list(catalog.adapters),
            "workers": {w: r.pipelines for w, r in replies.items()}, "failed": failed}
