"""Gateway metrics that tell the truth (issue 18): errors by OpenAI type, probes left out,
responses timed to their last byte, streams counted, cluster counters read from Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from core.jobs import Outcome, RenderResult
from core.reaping import REAPED_KEY
from core.settings import GatewaySettings
from core.telemetry import count_job, record_start
from tests.support import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def gateway(redis_server: RedisServer, tmp_path: Path) -> Iterator[TestClient]:
    Redis.from_url(redis_server.url).flushall()
    from service.app import create_app

    app = create_app(GatewaySettings(redis_url=redis_server.url, auth="off",
                                     storage_dir=tmp_path / "files", allowed_hosts="testserver",
                                     expected_workers="2", max_queue_depth=50))

    async def slow() -> StreamingResponse:  # a stream whose last byte comes 0.4 s after its headers
        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(0.4)
            yield b"last"

        return StreamingResponse(body())

    app.add_api_route("/test/slow", slow)
    with TestClient(app) as client:
        yield client


def samples(client: TestClient, name: str) -> list[tuple[dict[str, str], float]]:
    text = client.get("/metrics").text
    return [(s.labels, s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name]


def test_errors_are_counted_by_openai_type_code_and_endpoint_and_probes_are_left_out(
        gateway: TestClient) -> None:
    """Most "errors" the outside test saw were /readyz 503s while workers started, labelled
    `http_503` although the help text promised an OpenAI error type."""
    assert gateway.get("/readyz").status_code == 503  # no worker: expected, not an error
    assert gateway.get("/no-such-page").status_code == 404
    answer = gateway.post("/v1/images/generations", json={"model": "no-such-model",
                                                          "prompt": "a red circle"})
    assert answer.status_code == 404
    errors = {(s["type"], s["code"], s["endpoint"]): v
              for s, v in samples(gateway, "easel_errors_total")}
    assert errors == {("invalid_request_error", "", "unmatched"): 1,
                      ("invalid_request_error", "model_not_found",
                       "/v1/images/generations"): 1}
    requests = {(s["endpoint"], s["model"], s["status"]): v
                for s, v in samples(gateway, "easel_requests_total")}
    assert requests[("/readyz", "", "503")] == 1  # still counted as a request


def test_a_response_is_timed_to_its_last_byte_and_logged_then(
        gateway: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """A 3 s stream was timed 0.008 s: the middleware stopped the clock at its headers."""
    caplog.set_level(logging.INFO, logger="easel.gateway")
    t0 = time.perf_counter()
    assert gateway.get("/test/slow", headers={"x-request-id": "slow-1"}).content == b"firstlast"
    assert time.perf_counter() - t0 >= 0.4
    total = {s["endpoint"]: v for s, v in samples(gateway, "easel_request_seconds_sum")}
    assert total["/test/slow"] >= 0.4
    line = [r for r in caplog.records if getattr(r, "request_id", None) == "slow-1"]
    assert len(line) == 1 and line[0].seconds >= 0.4  # type: ignore[attr-defined]
    assert line[0].endpoint == "/test/slow" and line[0].status == 200  # type: ignore[attr-defined]


def test_cluster_counters_come_from_redis_so_one_gateway_scrape_shows_them(
        gateway: TestClient, redis_server: RedisServer) -> None:
    redis = Redis.from_url(redis_server.url)
    assert dict((s["reason"], v) for s, v in samples(gateway, "easel_job_retries_total")) \
        ["worker_lost"] == 0  # every reason exists from the start: 0, not a gap
    record_start(redis, "easel-up-worker-0")
    record_start(redis, "easel-up-worker-0")
    count_job(redis, "retried", "worker_lost")
    count_job(redis, "failed", "timeout")
    redis.incrby(REAPED_KEY, 3)
    assert samples(gateway, "easel_worker_starts_total") == [({"worker": "easel-up-worker-0"},
                                                              2.0)]
    retried = {s["reason"]: v for s, v in samples(gateway, "easel_job_retries_total")}
    failed = {s["reason"]: v for s, v in samples(gateway, "easel_job_failures_total")}
    assert retried["worker_lost"] == 1 and failed["timeout"] == 1 and failed["error"] == 0
    assert samples(gateway, "easel_jobs_reaped_total") == [({}, 3.0)]
    assert samples(gateway, "easel_redis_up") == [({}, 1.0)]


def test_the_gateway_exports_its_process_build_and_settings(gateway: TestClient) -> None:
    names = {name for name in (s.name for f in text_string_to_metric_families(
        gateway.get("/metrics").text) for s in f.samples)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info",
            "easel_build_info"} <= names
    build = samples(gateway, "easel_build_info")
    assert build[0][0]["component"] == "gateway" and build[0][0]["version"]
    assert samples(gateway, "easel_workers_expected") == [({"pipeline": "shapes"}, 2.0)]
    assert samples(gateway, "easel_queue_limit") == [({"pipeline": "shapes"}, 50.0)]
    models = {s["model"]: s["pipeline"] for s, _ in samples(gateway, "easel_model_info")}
    assert models["dall-e-2"] == "shapes"


def test_redis_down_shows_as_redis_up_zero(tmp_path: Path) -> None:
    from service.app import create_app

    app = create_app(GatewaySettings(redis_url="redis://127.0.0.1:1/0", auth="off",
                                     storage_dir=tmp_path / "files", allowed_hosts="testserver"))
    client = TestClient(app)  # no lifespan: it would wait for Redis
    assert samples(client, "easel_redis_up") == [({}, 0.0)]


class Feed:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for entry in entries:
            self.items.put_nowait(entry)

    async def close(self) -> None:
        pass


def test_a_stream_reports_its_first_partial_its_images_and_its_end() -> None:
    """Streamed images were not counted in easel_images_total, and nothing said when a stream
    ended or how long the first partial image took."""
    from core.catalog import load_catalog
    from service.metrics import GatewayMetrics
    from service.serving import ImageService
    from service.streaming import StreamReport, stream_events

    metrics = GatewayMetrics(None, load_catalog(None))
    service = ImageService(GatewaySettings(), load_catalog(None), SimpleNamespace(),  # type: ignore[arg-type]
                           SimpleNamespace(), metrics)  # type: ignore[arg-type]

    async def outcome() -> Outcome:
        await asyncio.sleep(0.2)
        return Outcome(job_id="j", status="finished",
                       result=RenderResult(keys=["a", "b"], seeds=[1, 2], seconds=0.2))

    async def run() -> list[bytes]:
        report = StreamReport(model="gpt-image-1")
        events = stream_events("image_generation", {}, Feed([{"index": 0, "key": "p"}]),  # type: ignore[arg-type]
                               outcome(), lambda key: b"png", {}, None, report,
                               service._stream_ended)
        return [e async for e in events]

    events = asyncio.run(run())
    assert [e.split(b"\n")[0] for e in events] == [
        b"event: image_generation.partial_image", b"event: image_generation.completed",
        b"event: image_generation.completed"]
    value = metrics.registry.get_sample_value
    assert value("easel_images_total", {"model": "gpt-image-1"}) == 2
    assert value("easel_streams_total", {"model": "gpt-image-1", "outcome": "completed"}) == 1
    first = value("easel_stream_first_partial_seconds_sum", {"model": "gpt-image-1"}) or 0
    whole = value("easel_stream_seconds_sum", {"model": "gpt-image-1"}) or 0
    assert 0 <= first < 0.2 <= whole
