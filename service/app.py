"""The gateway's app factory: settings, Redis, storage, waiter, metrics, routes, error envelope."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from PIL import Image, PngImagePlugin
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from core.catalog import load_catalog
from core.errors import OpenAIError, bad_request
from core.jobs import batch_queue
from core.reaping import reap
from core.redis_checks import check_redis_policy
from core.settings import GatewaySettings
from core.storage import LocalStorage, S3Storage, make_storage
from service.admin import admin, install_catalog, read_catalog
from service.auth import KeyChecker, parse_key_hashes
from service.background import BackgroundJobs
from service.batch_driver import BatchDriver
from service.batch_routes import batches_router
from service.batches import BatchStore
from service.catalog_sync import CatalogSync
from service.dispatch import ClientGone, Dispatcher
from service.docs import docs
from service.file_routes import files_router
from service.files import FileStore
from service.hosts import HostGuard, allowed_hosts, is_loopback
from service.idempotency import Idempotency
from service.job_routes import jobs_router
from service.job_runner import JobRunner
from service.job_store import JobStore
from service.limits import Admission
from service.metrics import QUIET_ENDPOINTS, GatewayMetrics
from service.observe import Observe, request_fields
from service.openapi import install as install_openapi
from service.pages import pages
from service.queue import JobQueue
from service.routes import router, v1
from service.serving import ImageService
from service.slow_clients import BodyDeadline
from service.waiter import CompletionWaiter
from service.webhooks import WebhookCollector, WebhookSender

log = logging.getLogger("easel.gateway")


def _envelope(exc: OpenAIError) -> Response:
    # ASCII escapes: a message echoing client text (an unknown field named "\ud800") must
    # still render; UTF-8 encoding of a lone surrogate would fail.
    return Response(json.dumps(exc.envelope(), separators=(",", ":")), exc.status,
                    headers=exc.headers, media_type="application/json")


def _answer(request: Request, exc: OpenAIError) -> Response:
    request.state.error = exc  # its type and code label the metrics and the log line
    return _envelope(exc)


async def _reap_forever(redis: Redis, queues: list[str], settings: GatewaySettings) -> None:
    """Requeue (or fail) jobs whose worker died, even while no worker is alive to do it."""
    while True:
        await asyncio.sleep(settings.reaper_seconds)
        try:
            await run_in_threadpool(reap, redis, queues, settings.outcome_ttl_seconds,
                                    settings.liveness_ttl_seconds)
        except Exception as exc:  # Redis away: the next pass tries again
            log.debug("reaper pass failed: %s", exc)


async def _purge_forever(storage: LocalStorage, ttl: float, every: float = 600.0) -> None:
    """Local files outlive their URLs by at most `every` seconds (S3 URLs expire by signature;
    give the bucket a lifecycle rule to delete the objects)."""
    while True:
        await asyncio.sleep(min(every, ttl))
        removed = await run_in_threadpool(storage.purge_older_than, ttl)
        if removed:
            log.info("purged %d expired local file(s)", removed)


async def _purge_files_forever(files: FileStore, every: float) -> None:
    """Expired Files API files go, bytes and metadata, within `every` seconds of expiring."""
    while True:
        await asyncio.sleep(every)
        try:
            removed = await files.purge()
        except Exception as exc:  # Redis or storage away: the next pass tries again
            log.debug("file purge failed: %s", exc)
            continue
        if removed:
            log.info("purged %d expired file(s)", removed)


def create_app(settings: GatewaySettings | None = None, processes: int = 1,
               leader: bool = True) -> FastAPI:
    """`processes`: how many gateway processes share this one's port (cli/serve.py); only
    the `leader` among them runs the reaper, the purges, background jobs and batches, so the
    gateway's limits on those hold however many processes it has."""
    settings = settings or GatewaySettings()
    catalog = (load_catalog(settings.models_file).with_default(settings.default_model)
               .with_extra_images(settings.extra_images))
    # Pillow's decompression-bomb guard at Easel's own limit (uploads are also checked first).
    Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
    # Pillow inflates a PNG's text chunks when it reads the header, up to 64 MB per image by
    # default: a 66 KB file of zTXt chunks cost that much.  Metadata is discarded anyway.
    PngImagePlugin.MAX_TEXT_MEMORY = 2 * PngImagePlugin.MAX_TEXT_CHUNK
    keys = None
    if settings.auth == "required":
        hashes = parse_key_hashes(settings.api_keys)
        if not hashes:
            raise RuntimeError("EASEL_AUTH=required but EASEL_API_KEYS is empty: configure key "
                               "hashes (easel hash-key KEY) or set EASEL_AUTH=off explicitly")
        keys = KeyChecker(hashes)
    elif not is_loopback(settings.host) and not settings.allow_no_auth_public:
        raise RuntimeError(f"EASEL_AUTH=off on {settings.host}, a non-loopback address, would let "
                           "anyone on the network use the API: configure EASEL_API_KEYS, bind "
                           "to 127.0.0.1, or set EASEL_ALLOW_NO_AUTH_PUBLIC=1 to force it")
    hosts = allowed_hosts(settings)
    sync_redis = Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
    # redis-py's pool refuses a connection past its cap ("Too many connections": a 503), 100 by
    # default, which a burst of held requests passes.  An HTTP connection needs at most two at
    # once (a stream: its pub/sub and a read), so this cap is never what refuses a request.
    async_redis = AsyncRedis.from_url(settings.redis_url, socket_connect_timeout=3,
                                      max_connections=2 * settings.max_connections + 64)
    queue = JobQueue(sync_redis, settings.job_timeout_seconds, settings.job_retries,
                     settings.outcome_ttl_seconds)
    metrics = GatewayMetrics(queue, catalog,
                             settings.expected_worker_counts(list(catalog.pipelines)),
                             settings.max_queue_depth)
    waiter = CompletionWaiter(async_redis)
    storage = make_storage(settings)
    storage.on_error = metrics.storage_failed

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(storage, S3Storage):
            try:  # create the bucket on first start; a store that is down is not fatal here
                await run_in_threadpool(storage.ensure_bucket)
            except Exception as exc:
                log.warning("could not check or create bucket %s: %s", storage.bucket, exc)
        await run_in_threadpool(check_redis_policy, sync_redis)
        await waiter.start()
        loops = [asyncio.create_task(admission.renew_forever()),
                 asyncio.create_task(app.state.catalog_sync.run_forever())]
        if leader:  # the gateway's housekeeping, and its limits on background work, once
            live = [p.queue for p in catalog.pipelines.values()]
            loops.append(asyncio.create_task(_reap_forever(
                sync_redis, live + [batch_queue(q) for q in live], settings)))
            runner.start()  # background jobs (service/job_runner.py)
            if isinstance(storage, LocalStorage):
                loops.append(asyncio.create_task(_purge_forever(storage,
                                                                settings.url_ttl_seconds)))
            loops.append(asyncio.create_task(_purge_files_forever(files,
                                                                  settings.files_purge_seconds)))
            loops.append(asyncio.create_task(app.state.batch_driver.run_forever()))
        yield
        await runner.stop()  # its held jobs' leases lapse; a gateway picks them up again
        for loop in loops:
            loop.cancel()
        await waiter.stop()
        await async_redis.aclose()
        sync_redis.close()

    # docs_url/redoc_url off: FastAPI's pages load scripts from a CDN (service/docs.py).
    app = FastAPI(title="Easel", version="0.1.0", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="OpenAI Images API on your own hardware")
    app.state.settings = settings
    app.state.catalog = catalog
    app.state.redis = async_redis
    app.state.queue = queue
    app.state.metrics = metrics
    app.state.storage = storage
    files = FileStore(async_redis, storage, settings.files_ttl_seconds)
    app.state.files = files
    app.state.batches = BatchStore(async_redis, settings.files_ttl_seconds)
    # The runner and the webhook sender are looked up when a batch needs them.
    app.state.batch_driver = BatchDriver(
        async_redis, app.state.batches, files, settings, lambda: app.state.background,
        lambda kind, data: app.state.send_event(kind, data))
    admission = Admission(async_redis, settings.max_queue_depth,
                          settings.key_requests_per_minute, settings.key_max_concurrent,
                          settings.lease_seconds)
    dispatcher = Dispatcher(settings, queue, waiter, metrics, admission, processes)
    app.state.images = ImageService(settings, catalog, dispatcher, storage, metrics, files)
    # Webhook events are queued for `easel webhooks`, which signs and posts them.
    webhooks = WebhookSender(sync_redis, settings.webhook_targets(),
                             settings.webhook_retry_intervals())
    app.state.webhooks = webhooks
    app.state.send_event = webhooks.send_event
    metrics.add_collector(WebhookCollector(sync_redis))
    app.state.background = BackgroundJobs(
        JobStore(async_redis, settings.background_ttl_seconds, settings.background_lease_seconds),
        queue, storage, settings.outcome_ttl_seconds)
    runner = JobRunner(app.state.background, app.state.images, settings, webhooks.send_event)
    app.state.keys = keys
    # An admin catalog reload on another gateway process reaches this one too.
    app.state.catalog_sync = CatalogSync(
        async_redis, lambda: install_catalog(app, read_catalog(settings)))
    app.state.allowed_hosts = hosts
    app.include_router(v1)
    app.include_router(admin)  # /v1/admin/*: admin keys only (service/admin.py)
    app.include_router(jobs_router)
    app.include_router(files_router)
    app.include_router(batches_router)
    app.include_router(router)
    app.include_router(pages)
    app.include_router(docs)
    install_openapi(app, catalog)  # request bodies from core/requests.py and the catalog

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> Response:
        return _answer(request, exc)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody is listening; nginx's "client closed request"

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=499)  # hung up mid-body: the client's doing, not an error

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return _answer(request, bad_request(str(first.get("msg", "Invalid request.")),
                                            ".".join(loc) or None, "invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = (f"Invalid URL ({request.method} {request.scope['path']})"
                   if exc.status_code == 404 else str(exc.detail))
        return _answer(request, OpenAIError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.scope["path"])
        return _answer(request, OpenAIError(500, "The server had an error processing your "
                                            "request.", "server_error", None, "server_error"))

    # Added before `observe`, so inside it: the 408 it raises from `receive` reaches the routes'
    # exception handlers directly (BaseHTTPMiddleware would wrap it in an ExceptionGroup).
    # Idempotency-Key (service/idempotency.py) sits inside BodyDeadline, so the body it hashes
    # arrives under the same deadline as any other.
    app.add_middleware(Idempotency)
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout_seconds)

    def finished(request: Request, status: int, seconds: float) -> None:
        endpoint = getattr(request.scope.get("route"), "path", "unmatched")
        ctx = getattr(request.state, "ctx", None)
        model = getattr(ctx, "model", "")
        metrics.latency.labels(endpoint, model).observe(seconds)
        metrics.requests.labels(endpoint, model, str(status)).inc()
        stream = getattr(ctx, "stream", None)
        error = getattr(request.state, "error", None) or getattr(stream, "error", None)
        if error is None and status >= 400 and status != 499:  # 499: nobody was listening
            error = OpenAIError(status, "", "server_error" if status >= 500 else
                                "invalid_request_error")
        if error is not None:
            metrics.error(endpoint, error.type, error.code)
        # Probes poll constantly (503 while starting is expected): keep them out of the log.
        level = (logging.DEBUG if endpoint in QUIET_ENDPOINTS else
                 logging.WARNING if status >= 500 else logging.INFO)
        log.log(level, "%s %s %d %.3fs", request.method, request.scope["path"], status,
                seconds, extra=request_fields(request, endpoint, status, seconds, error))

    # Request ids, and each request timed to its last byte (a stream's answer starts long
    # before it ends), counted and logged.
    app.add_middleware(Observe, finished=finished, answer=_answer)
    # Added last, so outermost: a foreign Host is refused before anything else runs.
    if hosts is not None:
        app.add_middleware(HostGuard, allowed=hosts)
    return app
