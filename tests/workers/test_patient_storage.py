"""A short storage outage costs a worker a wait, not a rendered job."""

from __future__ import annotations

import pytest

from core.storage import StorageError
from workers.patient_storage import patiently


def test_a_put_that_fails_while_storage_restarts_succeeds_after_backoff() -> None:
    attempts: list[int] = []
    waits: list[float] = []

    def put() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise StorageError("connection refused")
        return "stored"

    assert patiently(put, patience=60, what="storing images/x/0.png", sleep=waits.append) == \
        "stored"
    assert len(attempts) == 4
    assert waits == [0.25, 0.5, 1.0]  # doubling backoff


def test_an_outage_longer_than_the_patience_fails_the_call() -> None:
    def put() -> None:
        raise StorageError("connection refused")

    with pytest.raises(StorageError):
        patiently(put, patience=0, what="storing images/x/0.png", sleep=lambda s: None)
