"""Webhook events out of the gateway: each event becomes one RQ job per configured endpoint on
`easel:webhooks`, which `easel webhooks` signs and posts (workers/deliveries.py), retrying with
backoff (RQ's Retry with intervals; that process runs RQ's scheduler).  The gateway holds no
signing secret: it only says what happened and to whom.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool

from core.jobs import WEBHOOK_QUEUE, WEBHOOK_TASK
from core.webhooks import OUTCOMES, STATS_KEY, event_body, new_event

log = logging.getLogger("easel.gateway")
DELIVERY_TIMEOUT = 120  # seconds RQ lets one attempt run (the deliverer's own deadline is less)
KEEP_SECONDS = 7 * 86400  # finished and failed delivery jobs stay this long in RQ


class WebhookSender:
    def __init__(self, redis: Any, urls: list[str], retry_intervals: list[int]) -> None:
        self.redis = redis  # synchronous: RQ's enqueue, run in a thread
        self.urls = urls
        self.retry_intervals = retry_intervals

    async def send_event(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue `event_type` (e.g. "batch.completed") with `data` (e.g. {"id": "batch_..."})
        for every configured endpoint; nothing when none is configured.  Raises RedisError
        when the event could not be queued."""
        if not self.urls:
            return
        event = new_event(event_type, data)
        await run_in_threadpool(self._enqueue, event["id"], event_type, event_body(event))
        log.info("webhook %s %s queued for %d endpoint(s)", event_type, event["id"],
                 len(self.urls), extra={"event": event["id"], "type": event_type})

    def _enqueue(self, event_id: str, event_type: str, body: str) -> None:
        queue = Queue(WEBHOOK_QUEUE, connection=self.redis, serializer=JSONSerializer)
        retry = (Retry(max=len(self.retry_intervals), interval=self.retry_intervals)
                 if self.retry_intervals else None)
        for url in self.urls:
            # One message id per delivery, the same on every retry: receivers dedupe on it.
            message_id = f"msg_{secrets.token_hex(16)}"
            queue.enqueue_call(
                WEBHOOK_TASK, args=({"message_id": message_id, "event_id": event_id,
                                     "type": event_type, "url": url, "body": body},),
                job_id=message_id, timeout=DELIVERY_TIMEOUT, result_ttl=KEEP_SECONDS,
                failure_ttl=KEEP_SECONDS, retry=retry, description=f"{event_type} -> {url}")


class WebhookCollector(Collector):
    """easel_webhook_deliveries_total{outcome}: every attempt of every `easel webhooks`
    process, counted in Redis (core.webhooks.STATS_KEY)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "easel_webhook_deliveries", "Webhook delivery attempts by outcome: delivered, "
            "retried (failed, retry scheduled), failed (out of retries), refused (target not "
            "allowed)", labels=["outcome"])
        try:
            counts = {k.decode(): int(v) for k, v in self.redis.hgetall(STATS_KEY).items()}
        except (RedisError, OSError) as exc:
            log.debug("webhook metrics unavailable: %s", exc)
            counts = {}
        for outcome in OUTCOMES:
            family.add_metric([outcome], counts.get(outcome, 0))
        yield family
