"""Worker metrics: names, what each job records, and the /metrics server."""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.catalog import load_catalog
from tests.support import ROOT, free_port
from workers.metrics import WorkerMetrics, start_metrics_server

REQUIRED = {"easel_jobs", "easel_generation_seconds", "easel_step_seconds", "easel_batch_size",
            "easel_worker_images", "easel_queue_wait_seconds", "easel_model_load_seconds",
            "easel_worker_busy", "easel_worker_busy_seconds", "easel_jobs_running",
            "easel_storage_errors", "easel_build_info", "easel_worker_info", "process_cpu_seconds",
            "python_info"}


def families(metrics: WorkerMetrics) -> dict[str, object]:
    text = generate_latest(metrics.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def rq_job(pipeline: str = "shapes", wait: float = 2.0, **more: object) -> SimpleNamespace:
    started = dt.datetime.now(dt.UTC)
    return SimpleNamespace(id="job1", args=[{"pipeline": pipeline, "request_id": "req1"}],
                           enqueued_at=started - dt.timedelta(seconds=wait), started_at=started,
                           **more)


def test_every_worker_metric_is_exported_in_its_own_registry() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()  # no global registry: no clash
    first.pipelines_loaded({"shapes": 1.5})
    found = families(first)
    assert set(found) >= REQUIRED
    assert sample(first, "easel_model_load_seconds", pipeline="shapes") == 1.5
    assert sample(first, "easel_jobs_total", pipeline="shapes", status="failed") == 0
    assert sample(second, "easel_model_load_seconds", pipeline="shapes") is None


def test_a_job_records_wait_render_time_batch_and_images() -> None:
    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.1})
    m.job_started("shapes", rq_job(wait=2.0))
    assert sample(m, "easel_jobs_running", pipeline="shapes") == 1
    m.job_finished("shapes", "job1", images=4, steps=10, render_seconds=2.0)
    assert sample(m, "easel_jobs_running", pipeline="shapes") == 0
    assert abs((sample(m, "easel_queue_wait_seconds_sum", pipeline="shapes") or 0) - 2.0) < 0.1
    assert sample(m, "easel_jobs_total", pipeline="shapes", status="finished") == 1
    assert sample(m, "easel_worker_images_total", pipeline="shapes") == 4
    assert sample(m, "easel_generation_seconds_count", pipeline="shapes") == 4  # per image
    assert sample(m, "easel_generation_seconds_sum", pipeline="shapes") == 2.0
    assert sample(m, "easel_step_seconds_sum", pipeline="shapes") == 0.2
    assert sample(m, "easel_batch_size_sum", pipeline="shapes") == 4


def test_a_cross_request_batch_counts_its_pipeline_call_once() -> None:
    m = WorkerMetrics()
    m.rendered("shapes", images=3, steps=10, seconds=3.0, job_ids=("a", "b"))
    m.job_finished("shapes", "a", images=1, steps=10, render_seconds=0.0)
    m.job_finished("shapes", "b", images=2, steps=10, render_seconds=0.0)
    assert sample(m, "easel_batch_size_count", pipeline="shapes") == 1
    assert sample(m, "easel_batch_size_sum", pipeline="shapes") == 3
    assert sample(m, "easel_generation_seconds_sum", pipeline="shapes") == 3.0
    assert sample(m, "easel_jobs_total", pipeline="shapes", status="finished") == 2


def test_a_failed_job_is_counted_and_frees_the_worker() -> None:
    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.1})
    m.job_started("shapes", rq_job())
    assert m.job_failed(rq_job(), RuntimeError, RuntimeError("boom"), None) is True
    assert sample(m, "easel_jobs_total", pipeline="shapes", status="failed") == 1
    assert sample(m, "easel_jobs_running", pipeline="shapes") == 0


def test_metrics_server_serves_and_port_zero_disables_it() -> None:
    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.2})
    assert start_metrics_server(0, m.registry) is None
    port = free_port()
    server = start_metrics_server(port, m.registry, addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'easel_model_load_seconds{pipeline="shapes"} 0.2' in text
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_listen_on_loopback_unless_a_host_is_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `easel up` every worker's /metrics would otherwise be open to other hosts."""
    from core.settings import WorkerSettings

    monkeypatch.delenv("EASEL_METRICS_HOST", raising=False)
    assert WorkerSettings().metrics_host == "127.0.0.1"
    monkeypatch.setenv("EASEL_METRICS_HOST", "0.0.0.0")
    assert WorkerSettings().metrics_host == "0.0.0.0"  # what compose sets for Prometheus
    server = start_metrics_server(free_port(), WorkerMetrics().registry)  # the default address
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_does_not_stop_the_worker() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert start_metrics_server(port, WorkerMetrics().registry, addr="127.0.0.1") is None


def test_importing_worker_metrics_does_no_work() -> None:
    code = ("import sys, prometheus_client as p, workers.metrics; "
            "assert 'torch' not in sys.modules; "
            "assert not any(n.startswith('easel_') for n in p.REGISTRY._names_to_collectors)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_easel_up_gives_each_worker_its_own_metrics_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cli import stack

    monkeypatch.setattr(stack.subprocess, "Popen", lambda cmd, env: env)  # procs[name] = env
    s = stack.Stack(stack.StackOptions(workers=3))
    for name in ("gateway", "worker-0", "worker-1", "worker-2"):
        s._spawn(name, {"EASEL_METRICS_PORT": "9200"})
    ports = [s.procs[f"worker-{i}"]["EASEL_METRICS_PORT"] for i in range(3)]  # type: ignore[index]
    assert ports == ["9200", "9201", "9202"]
    s._spawn("worker-1", {"EASEL_METRICS_PORT": "0"})  # 0 keeps every worker's server off
    assert s.procs["worker-1"]["EASEL_METRICS_PORT"] == "0"  # type: ignore[index]


def test_busy_covers_the_pipeline_call_and_its_seconds_count_while_it_runs() -> None:
    """The outside test read easel_worker_busy 0 at full load: the batched call ran outside
    the marker.  Now the marker is the call itself, and its seconds include a call in progress
    (a ten-minute render shows as busy during those ten minutes, not after)."""
    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.1})
    assert sample(m, "easel_worker_busy", pipeline="shapes") == 0
    with m.rendering("shapes"):
        time.sleep(0.05)
        assert sample(m, "easel_worker_busy", pipeline="shapes") == 1
        assert (sample(m, "easel_worker_busy_seconds_total", pipeline="shapes") or 0) >= 0.05
        with m.rendering("shapes"):  # overlapping calls (pipelined batches) count once
            time.sleep(0.02)
    busy = sample(m, "easel_worker_busy_seconds_total", pipeline="shapes") or 0
    assert sample(m, "easel_worker_busy", pipeline="shapes") == 0
    assert 0.07 <= busy < 0.5
    time.sleep(0.02)
    assert sample(m, "easel_worker_busy_seconds_total", pipeline="shapes") == busy


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, int]] = {}

    def hincrby(self, key: str, field: str, by: int) -> None:
        counts = self.hashes.setdefault(key, {})
        counts[field] = counts.get(field, 0) + by


def test_failed_attempts_count_as_retried_or_failed_by_reason_here_and_in_redis() -> None:
    from rq.timeouts import JobTimeoutException

    from core.storage import StorageError
    from core.telemetry import JOBS_KEY

    m, redis = WorkerMetrics(), FakeRedis()
    m.job_failed(rq_job(retries_left=2, connection=redis), StorageError, StorageError("s3"), None)
    m.job_failed(rq_job(retries_left=0, connection=redis), JobTimeoutException,
                 JobTimeoutException("600 s"), None)
    m.job_failed(rq_job(retries_left=None, connection=redis), RuntimeError,
                 RuntimeError("CUDA out of memory. Tried to allocate"), None)
    assert sample(m, "easel_jobs_total", pipeline="shapes", status="retried") == 1
    assert sample(m, "easel_jobs_total", pipeline="shapes", status="failed") == 2
    assert redis.hashes[JOBS_KEY] == {"retried:storage": 1, "failed:timeout": 1,
                                      "failed:out_of_memory": 1}


def test_gpu_memory_is_exported_per_device_and_only_on_a_gpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert "easel_gpu_memory_bytes" not in families(WorkerMetrics(device="cpu"))

    cuda = SimpleNamespace(is_available=lambda: True, current_device=lambda: 0,
                           memory_reserved=lambda i: 1000 * (i + 1),
                           max_memory_reserved=lambda i: 5000,
                           get_device_properties=lambda i: SimpleNamespace(total_memory=8000))
    fake_torch = SimpleNamespace(cuda=cuda, device=lambda name: SimpleNamespace(
        index=int(name.split(":")[1]) if ":" in name else None))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert "easel_gpu_memory_bytes" not in families(WorkerMetrics(device="cpu"))
    m = WorkerMetrics(device="cuda:1")
    assert sample(m, "easel_gpu_memory_bytes", device="cuda:1") == 2000
    assert sample(m, "easel_gpu_memory_peak_bytes", device="cuda:1") == 5000
    assert sample(m, "easel_gpu_memory_total_bytes", device="cuda:1") == 8000
    assert sample(WorkerMetrics(device="cuda"), "easel_gpu_memory_bytes", device="cuda:0") == 1000


def test_histograms_fit_seconds_to_ten_minutes() -> None:
    """p95 queue wait read 113 s when no request took more than 91.5 s: buckets jumped
    60 -> 120 -> 300.  From one second up, neighbours are now at most 1.5x apart, and the top
    bucket holds a 600 s job."""
    from service.metrics import GatewayMetrics

    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.1})
    m.job_started("shapes", rq_job(wait=1.0))
    m.job_finished("shapes", "job1", images=1, steps=4, render_seconds=1.0)
    gateway = GatewayMetrics(None, load_catalog(None))
    gateway.latency.labels("/v1/images/generations", "dall-e-2").observe(1.0)
    for registry, name in ((m.registry, "easel_queue_wait_seconds"),
                           (m.registry, "easel_generation_seconds"),
                           (gateway.registry, "easel_request_seconds")):
        bounds = sorted({float(s.labels["le"]) for f in registry.collect() if f.name == name
                         for s in f.samples if s.name.endswith("_bucket")} - {float("inf")})
        assert bounds[-1] >= 600, name
        wide = [(a, b) for a, b in itertools.pairwise(bounds) if a >= 1 and b / a > 1.5]
        assert not wide, (name, wide)


def test_worker_info_names_its_version_device_and_pipelines() -> None:
    m = WorkerMetrics()
    m.info.info({"device": "cpu", "dtype": "float32", "pipelines": "shapes", "threads": "1",
                 "torch": "2.x"})
    assert sample(m, "easel_worker_info", device="cpu", dtype="float32", pipelines="shapes",
                  threads="1", torch="2.x") == 1
    build = [s for f in m.registry.collect() if f.name == "easel_build" for s in f.samples]
    assert build and build[0].labels["component"] == "worker" and build[0].labels["version"]
    m.storage_failed("put")
    assert sample(m, "easel_storage_errors_total", op="put") == 1


def test_easel_up_tells_the_gateway_how_many_workers_to_expect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import stack

    monkeypatch.delenv("EASEL_EXPECTED_WORKERS", raising=False)
    env = stack.Stack(stack.StackOptions(workers=3))._env("redis://127.0.0.1:1/0", tmp_path)
    assert env["EASEL_EXPECTED_WORKERS"] == "3"  # easel_workers_expected, and its alert


def test_runtime_loads_and_unloads_are_counted_with_their_memory() -> None:
    metrics = WorkerMetrics()
    metrics.pipeline_loaded("shapes", 0.7, 42_000_000)
    assert sample(metrics, "easel_model_load_seconds", pipeline="shapes") == 0.7
    assert sample(metrics, "easel_pipeline_loads_total", pipeline="shapes") == 1
    assert sample(metrics, "easel_pipeline_resident_bytes", pipeline="shapes") == 42_000_000
    metrics.pipeline_unloaded("shapes")
    assert sample(metrics, "easel_pipeline_resident_bytes", pipeline="shapes") == 0
