"""The RQ internals Easel builds on, checked by name and signature: an RQ upgrade that moves
one of them fails here, loudly, instead of in a worker at run time.

pyproject.toml pins RQ's major version (the one these were checked against); constraints.txt
pins the exact release. Who uses what: workers/worker.py (EaselWorker), workers/batching.py,
core/reaping.py, core/allowed_jobs.py (EaselJob), service/queue.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import rq
from redis import Redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from core.allowed_jobs import CALLBACK_ATTRIBUTES, EaselJob
from tests.support import RedisServer

TESTED_MAJOR = 3


def _params(func: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(func).parameters)


def _accepts(func: Callable[..., Any], *names: str) -> None:
    params = _params(func)
    missing = [n for n in names if n not in params]
    assert not missing, f"{func.__qualname__}{inspect.signature(func)} lacks {missing}"


def test_rq_is_the_major_version_easel_was_checked_against() -> None:
    assert int(rq.__version__.split(".")[0]) == TESTED_MAJOR, (
        f"RQ {rq.__version__}: re-check every hook in this file, then update TESTED_MAJOR and "
        "the rq pin in pyproject.toml")


def test_worker_hooks_easel_worker_overrides_or_calls() -> None:
    assert _params(SimpleWorker.execute_job)[:3] == ["self", "job", "queue"]
    assert _params(SimpleWorker.prepare_execution)[:2] == ["self", "job"]
    assert _params(SimpleWorker.prepare_job_execution)[:2] == ["self", "job"]
    assert _params(SimpleWorker.perform_job)[:4] == ["self", "job", "queue", "execution"]
    handle = _params(SimpleWorker.handle_job_failure)
    assert handle[:3] == ["self", "job", "queue"]
    _accepts(SimpleWorker.handle_job_failure, "started_job_registry", "exc_string", "execution")
    assert _params(SimpleWorker.set_state)[:2] == ["self", "state"]
    assert hasattr(WorkerStatus, "IDLE")
    _accepts(SimpleWorker.push_exc_handler, "handler_func")
    _accepts(SimpleWorker.__init__, "queues", "name", "connection", "serializer", "job_class")
    _accepts(SimpleWorker.work, "logging_level")
    assert isinstance(inspect.getattr_static(Job, "should_retry"), property)


def test_registries_queues_and_executions() -> None:
    _accepts(StartedJobRegistry.cleanup, "exception_handlers")
    _accepts(StartedJobRegistry.__init__, "queue", "serializer", "job_class")
    assert _params(Queue.remove)[:2] == ["self", "job_or_id"]
    _accepts(Queue.__init__, "connection", "serializer", "job_class")
    _accepts(Queue.get_job_ids, "offset", "length")
    _accepts(Queue.enqueue_call, "func", "args", "job_id", "timeout", "result_ttl",
             "failure_ttl", "retry", "description")
    assert isinstance(inspect.getattr_static(Queue, "intermediate_queue_key"), property)
    assert _params(IntermediateQueue.get_intermediate_queue_key) == ["queue_key"]
    assert isinstance(inspect.getattr_static(Execution, "composite_key"), property)


def test_what_easel_job_relies_on_to_refuse_other_functions() -> None:
    """RQ imports `func` (and the callbacks) lazily from the job's stored names."""
    for name in ("func", "func_name", "instance", "success_callback", "failure_callback",
                 "stopped_callback"):
        assert isinstance(inspect.getattr_static(Job, name), property), name
    _accepts(Job.send_webhooks, "status", "exc_string")
    source = inspect.getsource(Job.restore)
    for attr in CALLBACK_ATTRIBUTES:
        assert attr in source, f"RQ no longer restores {attr}: update core/allowed_jobs.py"
    assert "webhooks" in source
    assert "import_attribute" in inspect.getsource(inspect.getattr_static(Job, "func").fget)
    _accepts(Job.fetch, "id", "connection", "serializer")


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = RedisServer(tmp_path / "redis").start()
    yield Redis.from_url(server.url)
    server.stop()


def test_a_worker_built_like_easels_uses_easel_job_everywhere(redis: Redis) -> None:
    worker = SimpleWorker(["easel:contract"], connection=redis, serializer=JSONSerializer,
                          job_class=EaselJob)
    assert worker._stop_requested is False  # EaselWorker reads it between batches
    assert worker.job_class is EaselJob
    assert all(q.job_class is EaselJob for q in worker.queues)  # dequeue builds EaselJobs
    queue = Queue("easel:contract", connection=redis, serializer=JSONSerializer,
                  job_class=EaselJob)
    registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer, job_class=EaselJob)
    assert registry.job_class is EaselJob  # cleanup fetches abandoned jobs with it
    job = queue.enqueue_call("os.system", args=("true",))
    assert isinstance(Job.fetch(job.id, connection=redis, serializer=JSONSerializer), Job)
    assert type(EaselJob.fetch(job.id, connection=redis, serializer=JSONSerializer)) is EaselJob
