"""Jobs written straight into Redis that name anything but Easel's render task are refused.

RQ imports whatever dotted path a job hash names (its function and its callbacks) and sends
the webhooks it carries; `core.allowed_jobs.EaselJob` refuses such jobs before importing them.
"""

from __future__ import annotations

import http.server
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from redis import Redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from core.allowed_jobs import EaselJob, JobRefused, refusal
from core.catalog import load_catalog
from core.jobs import RENDER_TASK
from core.reaping import reap
from tests.conftest import Stack
from tests.support import free_port

HOSTILE = "tests.workers.hostile_task"


@pytest.fixture()
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hostile-ran"
    monkeypatch.setenv("EASEL_HOSTILE_MARKER", str(path))
    sys.modules.pop(HOSTILE, None)
    return path


def test_a_job_naming_another_function_is_refused_before_any_import(redis: Redis,
                                                                    marker: Path) -> None:
    queue = Queue("easel:test", connection=redis, serializer=JSONSerializer)
    for name, args in ((f"{HOSTILE}.record", ()), ("os.system", (f"touch {marker}",)),
                       ("builtins.eval", ("1",))):
        job = EaselJob.fetch(queue.enqueue_call(name, args=args).id, connection=redis,
                             serializer=JSONSerializer)
        with pytest.raises(JobRefused, match="refused"):
            job.perform()
        assert job.retries_left == 0
    assert HOSTILE not in sys.modules and not marker.exists()
    plain = queue.enqueue_call(RENDER_TASK, args=({},))
    assert refusal(EaselJob.fetch(plain.id, connection=redis, serializer=JSONSerializer)) is None


def test_callbacks_and_webhooks_make_a_job_refused_and_are_never_used(redis: Redis,
                                                                     marker: Path) -> None:
    queue = Queue("easel:test", connection=redis, serializer=JSONSerializer)
    with_callback = queue.enqueue_call(RENDER_TASK, args=({},),
                                       on_failure=Callback(f"{HOSTILE}.record"))
    with_webhook = queue.enqueue_call(RENDER_TASK, args=({},), webhooks=[
        Webhook(f"http://127.0.0.1:{free_port()}/x", "failed")])
    for queued in (with_callback, with_webhook):
        job = EaselJob.fetch(queued.id, connection=redis, serializer=JSONSerializer)
        assert refusal(job) is not None
        assert job.failure_callback is None and job.success_callback is None
    assert HOSTILE not in sys.modules and not marker.exists()


def test_the_reaper_never_runs_an_abandoned_jobs_failure_callback(redis: Redis,
                                                                  marker: Path) -> None:
    queue = Queue("easel:shapes", connection=redis, serializer=JSONSerializer)
    job = queue.enqueue_call(RENDER_TASK, args=({},), on_failure=Callback(f"{HOSTILE}.record"))
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    registry = StartedJobRegistry(queue=queue, serializer=JSONSerializer)
    redis.zadd(registry.key, {f"{job.id}:dead-execution": time.time() - 1})
    assert reap(redis, ["easel:shapes"], 60) == 1
    assert HOSTILE not in sys.modules and not marker.exists()


class _Hits(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def _final(redis: Redis, job_id: str, timeout: float = 60) -> Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        if job.get_status() in (JobStatus.FAILED, JobStatus.FINISHED):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never ended")


def test_a_real_worker_refuses_os_system_and_webhooks(stack: Stack, tmp_path: Path) -> None:
    """The worker process `easel worker` starts: jobs enqueued by hand on its own queue."""
    redis = Redis.from_url(stack.redis.url)
    queue = Queue(load_catalog(None).pipelines["shapes"].queue, connection=redis,
                  serializer=JSONSerializer)
    marker = tmp_path / "os-system-ran"
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        shell = queue.enqueue_call("os.system", args=(f"touch {marker}",))
        hook = queue.enqueue_call(RENDER_TASK, args=({},), webhooks=[Webhook(
            f"http://127.0.0.1:{listener.server_address[1]}/ssrf", "failed", method="POST")])
        for queued in (shell, hook):
            job = _final(redis, queued.id)
            assert job.get_status() == JobStatus.FAILED
            assert "refused" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]
        time.sleep(0.5)
        assert not marker.exists(), "os.system ran on the worker"
        assert _Hits.hits == [], "the worker sent a job's webhook"
    finally:
        listener.shutdown()
