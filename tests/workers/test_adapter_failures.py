"""A job naming a LoRA adapter that failed to load, in a real RQ worker (in-process, burst mode)
against real Redis: it fails at its first attempt, whatever retries it was given, and the
waiting gateway gets the adapter's message, not the generic one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from core.adapters import AdapterSpec
from core.jobs import RENDER_TASK, AdapterUse, Outcome, RenderJob, new_job_id, outcome_key
from core.settings import WorkerSettings
from core.storage import LocalStorage
from models.adapters import AdapterCache
from workers import runtime, tasks
from workers.worker import EaselWorker, _failure

WHY = "adapter bad for pipeline shapes failed to load: header too small"


class BrokenPipe:
    """Stands in for the diffusers pipeline: the adapter file is corrupt."""

    def __init__(self) -> None:
        self.loads = 0

    def load_lora_weights(self, path: str, adapter_name: str) -> None:
        self.loads += 1
        raise OSError("header too small")


class Loaded:
    """Stands in for models.loading.LoadedPipeline: its adapter switching, nothing to render."""

    def __init__(self) -> None:
        self.pipe = BrokenPipe()
        self.adapters = AdapterCache(self.pipe, [AdapterSpec("bad", "/srv/bad.safetensors",
                                                             ("shapes",))], 0, str, "shapes")
        self.adapters.preload()
        self.lock = threading.RLock()

    @contextlib.contextmanager
    def use_scheduler(self, name: str | None) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def use_adapters(self, loras: Any) -> Iterator[None]:
        self.adapters.activate(loras)
        yield


def test_a_job_naming_a_failed_adapter_fails_at_once_with_its_message(
        redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []
    real = tasks.render

    def counted(payload: dict[str, Any]) -> dict[str, Any]:
        attempts.append("run")
        return real(payload)

    monkeypatch.setattr(tasks, "render", counted)  # RQ imports it by name for every attempt
    loaded = Loaded()
    assert loaded.adapters.failed == {"bad": WHY} and loaded.pipe.loads == 1
    runtime.install(runtime.Runtime(WorkerSettings(watermark=False, output_classifier="off"),
                                    {"shapes": loaded}, LocalStorage(tmp_path / "files")))
    job = RenderJob(job_id=new_job_id(), model="easel-shapes", pipeline="shapes", width=64,
                    height=64, n=1, seeds=[1], steps=2, guidance=5.0,
                    loras=[AdapterUse(name="bad", scale=1.0)])
    queue = Queue("easel:shapes", connection=redis, serializer=JSONSerializer)
    queue.enqueue_call(RENDER_TASK, args=(job.model_dump(mode="json"),), job_id=job.job_id,
                       retry=Retry(max=2))
    EaselWorker([queue], connection=redis, serializer=JSONSerializer).work(burst=True)
    rq_job = Job.fetch(job.job_id, connection=redis, serializer=JSONSerializer)
    assert rq_job.get_status() == JobStatus.FAILED and attempts == ["run"]  # no retries
    outcome = Outcome.model_validate_json(redis.get(outcome_key(job.job_id)) or b"")
    assert (outcome.status, outcome.error, outcome.error_type) == (
        "failed", WHY, "adapter_unavailable")
    assert loaded.pipe.loads == 1  # the bad file was not read again for the job


def test_failure_outcomes_name_adapters_and_storage_and_nothing_else() -> None:
    assert _failure("j", f"models.adapters.AdapterError: {WHY}").error == WHY
    assert _failure("j", "core.storage.StorageError: s3 down").error_type == \
        "storage_unavailable"
    other = _failure("j", "RuntimeError: CUDA error at /srv/secret.py")
    assert other.error_type == "generation_failed" and "/srv" not in (other.error or "")
