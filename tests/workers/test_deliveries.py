"""Webhook deliveries as `easel webhooks` runs them: signed posts, retries, refusals, records."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from core.allowed_jobs import DeliveryJob, EaselJob, JobRefused
from core.jobs import RENDER_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK
from core.settings import WebhookSettings
from core.webhooks import ATTEMPTS_KEY, STATS_KEY, event_body, new_event, new_secret
from workers import deliveries
from workers.webhook_main import check_settings

SECRET = new_secret()


@pytest.fixture()
def receiver() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    got: list[tuple[bytes, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append((self.rfile.read(int(self.headers["content-length"])),
                        dict(self.headers.items())))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()


def _deliver(redis: Redis, url: str, retries: int = 0) -> Job:
    body = event_body(new_event("image.job.completed", {"id": "imgjob_1"}))
    job = Queue(WEBHOOK_QUEUE, connection=redis, serializer=JSONSerializer).enqueue_call(
        WEBHOOK_TASK, args=({"message_id": "msg_1", "event_id": "evt_1",
                             "type": "image.job.completed", "url": url, "body": body},),
        job_id="msg_1", retry=Retry(max=retries, interval=60) if retries else None)
    SimpleWorker([WEBHOOK_QUEUE], connection=redis, serializer=JSONSerializer,
                 job_class=DeliveryJob).work(burst=True)
    return Job.fetch(job.id, connection=redis, serializer=JSONSerializer)


def _attempts(redis: Redis) -> list[dict[str, Any]]:
    return [json.loads(a) for a in redis.lrange(ATTEMPTS_KEY, 0, -1)]


def test_a_delivery_is_signed_for_the_sdk_and_recorded(redis: Redis, receiver: Any) -> None:
    url, got = receiver
    deliveries.install(WebhookSettings(webhook_urls=url, webhook_secret=SECRET,
                                       webhook_private_targets=True))
    assert _deliver(redis, url).get_status() == "finished"
    (body, headers), = got
    event = openai.OpenAI(api_key="x", webhook_secret=SECRET).webhooks.unwrap(body, headers)
    assert event.id == json.loads(body)["id"] and headers["webhook-id"] == "msg_1"
    assert [(a["outcome"], a["status_code"]) for a in _attempts(redis)] == [("delivered", 204)]
    assert redis.hget(STATS_KEY, "delivered") == b"1"


@pytest.mark.parametrize(("configured", "private_ok", "why"), [
    ("http://127.0.0.1:9/other", True, "not one of EASEL_WEBHOOK_URLS"),
    (None, False, "loopback, private or link-local"),
])
def test_refused_deliveries_are_never_retried(redis: Redis, receiver: Any,
                                              configured: str | None, private_ok: bool,
                                              why: str) -> None:
    url, got = receiver
    deliveries.install(WebhookSettings(webhook_urls=configured or url, webhook_secret=SECRET,
                                       webhook_private_targets=private_ok))
    job = _deliver(redis, url, retries=3)
    assert job.get_status() == "failed" and not got
    (attempt,) = _attempts(redis)
    assert attempt["outcome"] == "refused" and why in attempt["error"]


def test_an_unreachable_endpoint_is_retried_later(redis: Redis) -> None:
    url = "http://127.0.0.1:9/hook"  # discard port: connection refused
    deliveries.install(WebhookSettings(webhook_urls=url, webhook_secret=SECRET,
                                       webhook_private_targets=True))
    job = _deliver(redis, url, retries=2)
    assert job.get_status() == "scheduled" and job.retries_left == 1
    assert [(a["attempt"], a["outcome"]) for a in _attempts(redis)] == [(1, "retried")]


def test_each_process_runs_only_its_own_task(redis: Redis) -> None:
    queue = Queue("easel:test", connection=redis, serializer=JSONSerializer)
    render, hook = (queue.enqueue_call(name, args=({},)) for name in (RENDER_TASK, WEBHOOK_TASK))
    with pytest.raises(JobRefused):
        DeliveryJob.fetch(render.id, connection=redis, serializer=JSONSerializer).perform()
    with pytest.raises(JobRefused):
        EaselJob.fetch(hook.id, connection=redis, serializer=JSONSerializer).perform()


def test_the_deliverer_refuses_endpoints_without_a_usable_secret() -> None:
    for secret in (None, "whsec_%%%", "whsec_c2hvcnQ="):
        with pytest.raises(SystemExit):
            check_settings(WebhookSettings(webhook_urls="https://a.example/h",
                                           webhook_secret=secret))
    check_settings(WebhookSettings(webhook_urls="https://a.example/h", webhook_secret=SECRET))
    check_settings(WebhookSettings())  # no endpoints: it idles, nothing to sign
