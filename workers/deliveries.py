"""The RQ task of `easel webhooks`: sign one webhook delivery and POST it.

A failed attempt raises, so RQ retries it after the next interval of its Retry (the process
runs RQ's scheduler); every attempt is recorded in Redis (core.webhooks.ATTEMPTS_KEY, counted in
STATS_KEY, exported by the gateway as easel_webhook_deliveries_total) and logged.  A delivery
to a URL this process was not configured with, or to an address the policy refuses, is refused
without retry: whoever can write to Redis must not be able to aim signed requests elsewhere.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from rq import get_current_job

from core.addresses import AddressRefused, checked_address
from core.settings import WebhookSettings
from core.webhooks import ATTEMPTS_KEEP, ATTEMPTS_KEY, STATS_KEY, signed_headers

log = logging.getLogger("easel.webhooks")
_settings: WebhookSettings | None = None


class DeliveryFailed(Exception):
    """The endpoint did not answer 2xx (RQ retries the delivery)."""


class DeliveryRefused(Exception):
    """The delivery may not be made at all (never retried)."""


def install(settings: WebhookSettings) -> None:
    global _settings
    _settings = settings


def _current() -> WebhookSettings:
    if _settings is None:
        raise RuntimeError("no webhook settings: deliveries run only inside `easel webhooks`")
    return _settings


def _record(redis: Any, delivery: dict[str, Any], attempt: int, outcome: str,
            status_code: int | None, error: str | None) -> None:
    entry = {"message_id": delivery["message_id"], "event_id": delivery["event_id"],
             "type": delivery["type"], "url": delivery["url"], "attempt": attempt,
             "at": int(time.time()), "outcome": outcome, "status_code": status_code,
             "error": error}
    with redis.pipeline() as pipe:
        pipe.lpush(ATTEMPTS_KEY, json.dumps(entry, separators=(",", ":")))
        pipe.ltrim(ATTEMPTS_KEY, 0, ATTEMPTS_KEEP - 1)
        pipe.hincrby(STATS_KEY, outcome, 1)
        pipe.execute()
    level = logging.INFO if outcome == "delivered" else logging.WARNING
    log.log(level, "webhook %s %s to %s: attempt %d %s%s", delivery["type"],
            delivery["event_id"], delivery["url"], attempt, outcome,
            f" ({error})" if error else "", extra={k: v for k, v in entry.items() if k != "at"})


def _post(settings: WebhookSettings, secret: str, delivery: dict[str, Any]) -> int:
    """POST to the checked address of the URL's host (not a second lookup), with the name in
    Host and TLS SNI; no redirects (a 3xx is a failed attempt)."""
    url = delivery["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryRefused("only http: and https: endpoints are posted to")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ip = checked_address(parts.hostname, port, settings.webhook_private_targets)
    except AddressRefused as exc:
        raise DeliveryRefused(f"{exc} (operators: EASEL_WEBHOOK_PRIVATE_TARGETS)") from exc
    body = delivery["body"]
    headers = {**signed_headers(secret, delivery["message_id"], body),
               "Host": parts.netloc.rpartition("@")[2], "User-Agent": "Easel-Webhooks/1"}
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False,
                      trust_env=False) as client:
        request = client.build_request("POST", httpx.URL(url).copy_with(host=ip),
                                       content=body.encode(), headers=headers,
                                       extensions={"sni_hostname": parts.hostname})
        return client.send(request).status_code


def deliver(delivery: dict[str, Any]) -> dict[str, Any]:
    settings = _current()
    job = get_current_job()
    assert job is not None
    attempt = int(job.meta.get("attempt", 0)) + 1
    job.meta["attempt"] = attempt
    job.save_meta()
    retries_left = job.retries_left or 0
    status: int | None = None
    try:
        if delivery.get("url") not in settings.webhook_targets():
            raise DeliveryRefused("the URL is not one of EASEL_WEBHOOK_URLS")
        if settings.webhook_secret is None:
            raise DeliveryRefused("EASEL_WEBHOOK_SECRET is not set")
        status = _post(settings, settings.webhook_secret.get_secret_value(), delivery)
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the endpoint answered {status}")
    except DeliveryRefused as exc:
        job.retries_left = 0  # refused again on every retry: give up now
        _record(job.connection, delivery, attempt, "refused", None, str(exc))
        raise
    except (DeliveryFailed, httpx.HTTPError, OSError) as exc:
        error = str(exc) if isinstance(exc, DeliveryFailed) else type(exc).__name__
        _record(job.connection, delivery, attempt, "retried" if retries_left > 0 else "failed",
                status, error)
        raise DeliveryFailed(error) from exc
    _record(job.connection, delivery, attempt, "delivered", status, None)
    return {"status_code": status, "attempt": attempt}
