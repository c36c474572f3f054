"""`easel webhooks`: the process that signs and posts webhook deliveries from `easel:webhooks`.

A small RQ worker of its own, not a render worker: a slow receiver never holds a GPU, and the
signing secret lives in this process only (the gateway queues events without it).  It runs RQ's
scheduler, which moves retries whose backoff has passed back onto the queue.  No torch here.
"""

from __future__ import annotations

import logging
import socket
import threading

from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from core import liveness
from core.allowed_jobs import DeliveryJob
from core.jobs import WEBHOOK_QUEUE
from core.logs import setup_logging
from core.redis_checks import check_redis_policy, wait_for_redis
from core.settings import WebhookSettings
from core.webhooks import secret_bytes
from workers import deliveries

log = logging.getLogger("easel.webhooks")


def check_settings(settings: WebhookSettings) -> None:
    """Refuse to start with endpoints but nothing to sign with: every delivery would be
    refused.  With no endpoints it idles (compose starts it whether or not they are set)."""
    if settings.webhook_secret is None and not settings.webhook_targets():
        return
    if settings.webhook_secret is None:
        raise SystemExit("EASEL_WEBHOOK_SECRET is not set: give it a whsec_ secret (the "
                         "receivers verify deliveries with it)")
    try:
        key = secret_bytes(settings.webhook_secret.get_secret_value())
    except ValueError as exc:
        raise SystemExit(f"EASEL_WEBHOOK_SECRET: {exc}") from None
    if len(key) < 24:
        raise SystemExit("EASEL_WEBHOOK_SECRET is too short: use at least 24 random bytes "
                         "(whsec_ + base64)")


def _beat_forever(redis: Redis, name: str, settings: WebhookSettings,
                  stop: threading.Event) -> None:
    """Liveness for `easel webhooks --check` (the container healthcheck)."""
    while not stop.wait(settings.heartbeat_seconds):
        try:
            liveness.beat(redis, name, [WEBHOOK_QUEUE], settings.liveness_ttl_seconds)
        except Exception as exc:  # Redis away: keep trying; RQ reconnects its own loop
            log.warning("heartbeat failed: %s", exc)


def alive(settings: WebhookSettings) -> bool:
    client = Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        return liveness.live_count(client, WEBHOOK_QUEUE) > 0
    finally:
        client.close()


def run(settings: WebhookSettings) -> None:
    setup_logging(settings.log_json, component="webhooks")
    check_settings(settings)
    deliveries.install(settings)
    redis = Redis.from_url(settings.redis_url)
    wait_for_redis(redis)
    check_redis_policy(redis)
    name = liveness.process_name(settings.name or f"easel-webhooks-{socket.gethostname()}")
    beats = Redis.from_url(settings.redis_url, socket_timeout=2 * settings.heartbeat_seconds,
                           socket_connect_timeout=2 * settings.heartbeat_seconds)
    liveness.beat(beats, name, [WEBHOOK_QUEUE], settings.liveness_ttl_seconds)
    stop = threading.Event()
    threading.Thread(target=_beat_forever, args=(beats, name, settings, stop), daemon=True,
                     name="easel-heartbeat").start()
    worker = SimpleWorker([WEBHOOK_QUEUE], name=name, connection=redis,
                          serializer=JSONSerializer, job_class=DeliveryJob)
    log.info("webhooks %s delivering to %d endpoint(s)", name, len(settings.webhook_targets()),
             extra={"worker": name})
    try:
        # The scheduler (a small forked process) re-queues retries when their interval is up.
        worker.work(with_scheduler=True, logging_level="WARNING")
    finally:
        stop.set()
        liveness.forget(beats, name)
