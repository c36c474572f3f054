"""Storage calls that outlast a short storage outage instead of failing a rendered job.

A render costs seconds of compute; an S3 restart costs seconds of downtime.  Failing the job
would spend a retry (shared with worker deaths) and, on the last one, the client's request, so
a worker keeps trying the same put or get with backoff for `storage_patience_seconds`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from core.storage import StorageError

log = logging.getLogger("easel.worker")
T = TypeVar("T")


def patiently(call: Callable[[], T], patience: float, what: str,
              sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, retried on StorageError with doubling delays until `patience` seconds pass."""
    deadline = time.monotonic() + patience
    delay = 0.25
    while True:
        try:
            return call()
        except StorageError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("storage unavailable for %s (%s); retrying in %.1fs", what, exc,
                        min(delay, left))
            sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
