"""Webhooks end to end: a background job's event, signed by `easel webhooks`, verified by the
official SDK's `client.webhooks.unwrap()`; a failing receiver is retried until it succeeds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis import Redis

from core.webhooks import ATTEMPTS_KEY, new_secret
from tests.support import Gateway, RedisServer, base_env, start_webhooks, stop

SECRET = new_secret()


class Receiver:
    """A webhook endpoint on loopback that answers 500 to the first `failures` deliveries."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[bytes, dict[str, str], int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if receiver.failures > 0 else 200
                receiver.failures -= 1
                receiver.received.append((body, dict(self.headers.items()), status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} deliveries"
            time.sleep(0.05)


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[tuple[Gateway, Receiver, Redis]]:
    """Gateway and `easel webhooks` (no render worker: the jobs here fail before rendering)."""
    redis = RedisServer(tmp_path / "redis").start()
    receiver = Receiver(failures=1)
    env = base_env(redis.url, tmp_path, EASEL_WEBHOOK_URLS=receiver.url,
                   EASEL_WEBHOOK_RETRY_SECONDS="1,1", EASEL_WEBHOOK_SECRET=SECRET,
                   EASEL_WEBHOOK_PRIVATE_TARGETS="1", EASEL_BACKGROUND_POLL_SECONDS="0.1")
    deliverer = start_webhooks(env)
    gateway = Gateway(env).start()
    try:
        yield gateway, receiver, Redis.from_url(redis.url)
    finally:
        gateway.stop()
        stop(deliverer)
        receiver.server.shutdown()
        redis.stop()


def test_a_failed_job_is_announced_signed_and_retried_until_delivered(
        stack: tuple[Gateway, Receiver, Redis]) -> None:
    gateway, receiver, redis = stack
    # Fails when it runs: its image URL is a loopback address, which the gateway never fetches.
    job = httpx.post(f"{gateway.base_url}/v1/images/edits",
                     json={"prompt": "x", "model": "gpt-image-1",
                           "images": [{"image_url": "http://127.0.0.1:9/a.png"}]},
                     headers={"Prefer": "respond-async"}).json()
    receiver.wait_for(2)  # the first attempt got 500; the retry, a second later, 200
    (first, first_headers, first_status), (body, headers, status) = receiver.received
    assert (first_status, status) == (500, 200)
    assert first == body and first_headers["webhook-id"] == headers["webhook-id"]
    client = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    for payload, sent, _ in receiver.received:  # every delivery verifies with the SDK
        event = client.webhooks.unwrap(payload, sent)
        assert event.type == "image.job.failed"  # type: ignore[comparison-overlap]
    event_json = json.loads(body)
    assert event_json["object"] == "event" and event_json["id"].startswith("evt_")
    assert event_json["data"] == {"id": job["id"]}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(body.replace(b"failed", b"completed"), headers)
    attempts = [json.loads(a) for a in redis.lrange(ATTEMPTS_KEY, 0, -1)]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in reversed(attempts)] == [
        (1, "retried", 500), (2, "delivered", 200)]
    metrics = httpx.get(f"{gateway.base_url}/metrics").text
    assert 'easel_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    assert 'easel_webhook_deliveries_total{outcome="retried"} 1.0' in metrics
