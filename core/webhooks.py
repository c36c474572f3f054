"""Webhook events: their shape, their signature (Standard Webhooks, as OpenAI signs), and the
Redis keys where deliveries are counted and recorded.  The gateway queues deliveries
(service/webhooks.py); `easel webhooks` signs and posts them (workers/deliveries.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

STATS_KEY = "easel:stats:webhooks"  # hash: outcome -> count (delivered, retried, failed, refused)
ATTEMPTS_KEY = "easel:webhooks:attempts"  # list of JSON attempts, newest first
ATTEMPTS_KEEP = 1000
OUTCOMES = ("delivered", "retried", "failed", "refused")


def new_event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's event object: {"id": "evt_...", "object": "event", "type", "created_at",
    "data": {"id": ...}}."""
    return {"id": f"evt_{secrets.token_hex(16)}", "object": "event", "type": event_type,
            "created_at": int(time.time()), "data": data}


def event_body(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def secret_bytes(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret (what the SDKs decode); any other string is used
    as it is, as the OpenAI SDK does."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except binascii.Error as exc:
            raise ValueError("the webhook secret's part after 'whsec_' is not base64") from exc
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`webhook-signature`: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">."""
    digest = hmac.new(secret_bytes(secret), f"{message_id}.{timestamp}.{body}".encode(),
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, body: str,
                   timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": message_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, message_id, ts, body),
            "content-type": "application/json"}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
