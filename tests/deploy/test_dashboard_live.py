"""The shipped dashboard and alert rules against a real Prometheus scraping a real stack.

A private Redis, the gateway and one worker (tests/support.py) take a short mixed load:
generations (some batched), an edit, a stream with a partial image, refused requests.
Prometheus (Debian's `prometheus`, scrape and rule interval 1 s) scrapes both processes as the
compose jobs `easel-gateway` and `easel-workers`.  Then every dashboard query must parse and
return a finite value (the GPU panel excepted: no GPU here), every alert rule must evaluate
without error on series that exist, and one alert the setup provokes must be pending.  The
same run's JSON logs must all parse and carry the fields an operator greps for.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from tests.deploy.test_observability import dashboard_queries, metric_names
from tests.support import (
    ROOT,
    Gateway,
    RedisServer,
    base_env,
    free_port,
    stop,
    wait_port,
    wait_ready,
)

pytestmark = pytest.mark.slow  # a stack, Prometheus and a load: about a minute on 2 cores
RULES = ROOT / "deploy/prometheus/alerts.yml"
NO_DATA_HERE = ("easel_gpu_",)  # GPU series exist only on CUDA workers


@dataclass
class Live:
    prometheus: str
    gateway_log: Path
    worker_log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"
        answer = httpx.get(url, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        return list(answer["data"]["result"])

    def api(self, path: str) -> Any:
        answer = httpx.get(f"{self.prometheus}/api/v1/{path}", timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def load(base: str) -> None:
    """The mixed load; 2 s pauses let Prometheus see every series before and after it grows."""
    gen = {"model": "dall-e-2", "prompt": "a red circle", "size": "256x256", "steps": 4}
    stream = {"model": "gpt-image-1", "prompt": "two cyan squares", "stream": True,
              "partial_images": 1, "steps": 8, "size": "1024x1024"}
    with httpx.Client(base_url=base, timeout=120) as c:

        def streamed(rid: str) -> str:
            with c.stream("POST", "/v1/images/generations", json=stream,
                          headers={"x-request-id": rid}) as r:
                assert r.status_code == 200
                return "".join(r.iter_text())

        assert c.post("/v1/images/generations", json=gen).status_code == 200
        assert "image_generation.completed" in streamed("stream-0")
        time.sleep(2)
        # An edit first, so that the generations queue behind it and run as one batch.
        source = Image.new("RGBA", (256, 256), (255, 255, 255, 255))
        mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
        mask.paste((0, 0, 0, 0), (128, 0, 256, 256))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            files = {"image": ("i.png", png(source)), "mask": ("m.png", png(mask))}
            edit = pool.submit(c.post, "/v1/images/edits", headers={"x-request-id": "edit-1"},
                               files=files, data={"prompt": "a blue square", "model": "dall-e-2",
                                     "size": "256x256", "steps": "24"})
            time.sleep(0.5)
            gens = [pool.submit(c.post, "/v1/images/generations", json={**gen, "seed": i},
                                headers={"x-request-id": f"gen-{i}"}) for i in range(3)]
            assert edit.result().status_code == 200, edit.result().text
            assert [g.result().status_code for g in gens] == [200, 200, 200]
        assert "image_generation.partial_image" in streamed("stream-1")
        bad = c.post("/v1/images/generations", json={**gen, "size": "13x13"},
                     headers={"x-request-id": "bad-1"})
        assert bad.status_code == 400
        assert c.post("/v1/images/generations", json={**gen, "model": "nope"}).status_code == 404


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian: scripts/apt-install.sh prometheus; "
                    "`make test-slow` installs it)")
    tmp = tmp_path_factory.mktemp("live")
    redis = RedisServer(tmp / "redis").start()
    worker_port, prometheus_port = free_port(), free_port()
    env = base_env(redis.url, tmp, EASEL_LOG_JSON="true", EASEL_EXPECTED_WORKERS="2",
                   EASEL_METRICS_PORT=str(worker_port))
    worker_log, gateway_log = tmp / "worker.log", tmp / "gateway.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "cli", "worker"], cwd=ROOT,
                                  env=dict(env, EASEL_NAME="live-worker"), stdout=out,
                                  stderr=subprocess.STDOUT)
    gateway = Gateway(env, log=gateway_log).start()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [
                  {"job_name": "easel-gateway",
                   "static_configs": [{"targets": [f"127.0.0.1:{gateway.port}"]}]},
                  {"job_name": "easel-workers",
                   "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"))
    try:
        wait_port(prometheus_port, proc=prometheus)
        wait_ready(gateway.base_url)
        time.sleep(2)  # a few scrapes of every series at its starting value
        load(gateway.base_url)
        time.sleep(3)  # scrapes and rule evaluations after the load
        yield Live(f"http://127.0.0.1:{prometheus_port}", gateway_log, worker_log)
    finally:
        stop(prometheus)
        gateway.stop()
        stop(worker)
        redis.stop()


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def test_every_dashboard_query_returns_data_from_the_live_stack(live: Live) -> None:
    empty = []
    for title, expr in dashboard_queries():
        result = live.query(expr.replace("$__rate_interval", "1m"))
        if not finite(result) and not any(p in expr for p in NO_DATA_HERE):
            empty.append(f"{title}: {expr} -> {result}")
    assert not empty, "\n".join(empty)


def test_every_alert_rule_evaluates_on_live_series(live: Live) -> None:
    rules = [r for g in live.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        for name in metric_names(rule["query"]):
            assert live.query(f'count({{__name__="{name}"}})'), (rule["name"], name)
    # EASEL_EXPECTED_WORKERS=2 and one worker: the alert is on its way (for: 5m).
    alerts = {(a["labels"]["alertname"], a["state"]) for a in live.api("alerts")["alerts"]}
    assert ("EaselWorkersBelowExpected", "pending") in alerts
    assert not {name for name, _ in alerts} - {"EaselWorkersBelowExpected"}


def lines(path: Path) -> list[dict[str, Any]]:
    text = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return [json.loads(ln) for ln in text]  # every line of the stream is one JSON object


def test_gateway_and_worker_logs_are_one_json_schema(live: Live) -> None:
    from core.logs import BASE_FIELDS, FIELDS

    gateway, worker = lines(live.gateway_log), lines(live.worker_log)
    for line in gateway + worker:
        assert set(BASE_FIELDS) <= set(line) <= set(BASE_FIELDS) | set(FIELDS), line
        assert line["ts"].endswith("+00:00") and len(line["ts"]) == 29, line["ts"]
    assert {ln["component"] for ln in gateway} == {"gateway"}
    assert {ln["component"] for ln in worker} == {"worker"}
    by_request = {ln["request_id"]: ln for ln in gateway if ln.get("endpoint")}
    bad = by_request["bad-1"]
    assert (bad["status"], bad["model"], bad["error_type"]) == (400, "dall-e-2",
                                                               "invalid_request_error")
    assert bad["error_code"] and bad["endpoint"] == "/v1/images/generations"
    stream = by_request["stream-1"]
    assert stream["stream"] == "completed" and stream["images"] == 1
    assert 0 < stream["first_partial_seconds"] < stream["seconds"]
    assert by_request["edit-1"]["job_id"] and by_request["edit-1"]["images"] == 1
    done = {ln["job_id"]: ln for ln in worker if ln.get("status") == "finished"}
    assert done[by_request["edit-1"]["job_id"]]["request_id"] == "edit-1"
    batches = [ln for ln in worker if len(ln.get("job_ids", [])) >= 2]
    assert batches, "the three generations queued behind the edit ran as one batch"
    for job_id in batches[0]["job_ids"]:  # each job logs the batch's real render time
        assert done[job_id]["render_seconds"] == batches[0]["render_seconds"] > 0
