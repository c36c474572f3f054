"""What Prometheus scrapes parses, and the shipped dashboard asks only for metrics Easel exports."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.catalog import load_catalog
from core.settings import GatewaySettings
from service.metrics import GatewayMetrics
from tests.support import RedisServer
from workers.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/easel.json"
# Series Prometheus itself adds: to every target, and for pending or firing alerts.
PROMETHEUS_BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "ceil", "clamp_max", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "increase", "irate",
    "label_replace", "last_over_time", "max", "max_over_time", "min", "min_over_time", "quantile",
    "quantile_over_time", "rate", "round", "scalar", "sort", "sort_desc", "sum", "sum_over_time",
    "time", "topk", "bottomk", "vector", "group", "changes", "resets", "present_over_time",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[TestClient]:
    # A Redis of its own: the session's Redis may have live workers from other tests, and this
    # test asserts on the worker count.
    redis_server = RedisServer(tmp_path / "redis").start()
    settings = GatewaySettings(redis_url=redis_server.url, auth="off",
                               storage_dir=tmp_path / "files",
                               allowed_hosts="testserver")  # TestClient's Host
    from service.app import create_app

    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        redis_server.stop()


def test_gateway_metrics_parse_as_prometheus_text(gateway: TestClient) -> None:
    assert gateway.get("/healthz").status_code == 200
    assert gateway.get("/v1/models").status_code == 200
    assert gateway.get("/no-such-page").status_code == 404
    response = gateway.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {f.name: f for f in text_string_to_metric_families(response.text)}

    requests = {(s.labels["endpoint"], s.labels["status"]) for s in found["easel_requests"].samples
                if s.name == "easel_requests_total"}
    assert {("/healthz", "200"), ("/v1/models", "200")} <= requests
    latency = found["easel_request_seconds"]
    assert latency.type == "histogram"
    assert any(s.name == "easel_request_seconds_bucket" and s.labels["le"] == "+Inf"
               for s in latency.samples)
    errors = {(s.labels["type"], s.labels["endpoint"]): s.value
              for s in found["easel_errors"].samples if s.name == "easel_errors_total"}
    assert errors == {("invalid_request_error", "unmatched"): 1}  # an OpenAI type, no probes
    # Read from Redis at scrape time: the default catalog's one pipeline, no worker running.
    assert [(s.labels, s.value) for s in found["easel_queue_depth"].samples] == \
        [({"pipeline": "shapes"}, 0.0)]
    assert [s.value for s in found["easel_workers_alive"].samples] == [0.0]
    assert {"easel_images", "easel_requests_waiting"} <= set(found)


def test_worker_metrics_parse_as_prometheus_text() -> None:
    m = WorkerMetrics()
    m.pipelines_loaded({"shapes": 0.5})
    m.job_finished("shapes", "j", images=2, steps=4, render_seconds=0.4)
    text = generate_latest(m.registry).decode()
    found = {f.name: f for f in text_string_to_metric_families(text)}
    assert found["easel_generation_seconds"].type == "histogram"
    assert found["easel_jobs"].type == "counter"
    assert found["easel_worker_busy"].type == "gauge"


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can produce, whether or not it has a sample yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                 "_created"),
                "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression; fails on identifiers it cannot place."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors, $__rate_interval included
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", expr):
        word, call = match.group(1), match.group(2)
        if call:
            assert word in PROMQL_FUNCTIONS, f"unknown PromQL function {word} in {expr}"
        elif word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def fake_cuda_torch() -> SimpleNamespace:
    """Just enough of torch for a worker's GPU series (workers.gauges.GpuMemory)."""
    cuda = SimpleNamespace(is_available=lambda: True, current_device=lambda: 0,
                           memory_reserved=lambda i: 1, max_memory_reserved=lambda i: 1,
                           get_device_properties=lambda i: SimpleNamespace(total_memory=1))
    return SimpleNamespace(cuda=cuda, device=lambda name: SimpleNamespace(index=0))


def all_exported_names() -> set[str]:
    """Every series name the gateway and a worker can export, the GPU ones included (a fake
    CUDA torch stands in: on a CPU worker they are absent by design)."""
    with mock.patch.dict(sys.modules, {"torch": fake_cuda_torch()}):
        worker = exported_names(WorkerMetrics(device="cuda:0").registry)
    return (exported_names(GatewayMetrics(None, load_catalog(None)).registry) | worker
            | PROMETHEUS_BUILTIN)


def test_dashboard_queries_use_only_metrics_easel_exports() -> None:
    exported = all_exported_names()
    for title, expr in dashboard_queries():
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr}"
        unknown = used - exported
        assert not unknown, f"{title}: {sorted(unknown)} are not exported by Easel"


def test_the_metric_name_parser_is_not_fooled_by_labels_or_groupings() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, endpoint) '
            '(rate(easel_request_seconds_bucket{endpoint=~"/v1/.*"}[$__rate_interval])))')
    assert metric_names(expr) == {"easel_request_seconds_bucket"}
    assert metric_names("sum(rate(easel_nope_total[5m])) / sum(up)") == {"easel_nope_total", "up"}


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]


def test_every_easel_metric_is_documented_in_deploy_md() -> None:
    """docs/deploy.md ("Metrics") lists every metric the gateway and a worker export."""
    docs = (ROOT / "docs/deploy.md").read_text()
    suffix = {"counter": "_total", "info": "_info"}
    with mock.patch.dict(sys.modules, {"torch": fake_cuda_torch()}):
        worker = list(WorkerMetrics(device="cuda:0").registry.collect())
    families = worker + list(GatewayMetrics(None, load_catalog(None)).registry.collect())
    names = {f.name + suffix.get(f.type, "") for f in families if f.name.startswith("easel_")}
    missing = sorted(n for n in names if f"`{n}`" not in docs)
    assert not missing, f"document these in docs/deploy.md: {missing}"
