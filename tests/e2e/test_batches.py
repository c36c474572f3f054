"""The Batch API through the official SDK against a real gateway and worker (the issue's "done
when"): 20 generations in one JSONL file, polled to `completed`, each output line exactly the
live answer; a bad line fails alone; another key sees nothing; and a worker killed mid-batch
changes nothing in the output."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from PIL import Image

from service.auth import hash_key
from tests.e2e.test_faults import FAST_RECOVERY, _busy
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

GEN = "/v1/images/generations"
BODY = {"model": "easel-shapes", "size": "64x64", "response_format": "b64_json", "steps": 4}


@dataclass
class Rig:
    redis: RedisServer
    env: dict[str, str]
    gateway: Gateway
    workers: list[subprocess.Popen] = field(default_factory=list)

    def client(self, key: str = "sk-alice") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway.base_url}/v1", api_key=key,
                             max_retries=0, timeout=60)

    def worker(self, name: str) -> subprocess.Popen:
        self.workers.append(start_worker(self.env, name))
        return self.workers[-1]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    data = tmp_path_factory.mktemp("batches")
    redis = RedisServer(data / "redis", appendonly=True).start()
    keys = f"alice:{hash_key('sk-alice')},bob:{hash_key('sk-bob')}"
    env = base_env(redis.url, data, EASEL_AUTH="required", EASEL_API_KEYS=keys,
                   EASEL_BATCH_POLL_SECONDS="0.2", EASEL_BATCH_LEASE_SECONDS="3",
                   EASEL_BACKGROUND_POLL_SECONDS="0.2", EASEL_KEY_MAX_CONCURRENT="0",
                   # One render per pipeline call: cross-request batching moves pixels by up to
                   # 3/255 (float order), and a batch line must equal the live call exactly.
                   EASEL_MAX_BATCH_IMAGES="1", **FAST_RECOVERY)
    r = Rig(redis, env, Gateway(env, log=data / "gateway.log").start())
    r.worker("batch-w0")
    try:
        wait_ready(r.gateway.base_url)
        yield r
    finally:
        r.gateway.stop()
        for w in r.workers:
            stop(w, signal.SIGKILL)
        redis.stop()


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _line(i: int, **body: Any) -> dict[str, Any]:
    return {"custom_id": f"req-{i}", "method": "POST", "url": GEN,
            "body": {**BODY, "prompt": f"{1 + i % 3} red circles", "seed": 100 + i, **body}}


def _run(client: openai.OpenAI, lines: list[dict[str, Any]] | bytes,
         timeout: float = 90) -> Any:
    data = lines if isinstance(lines, bytes) else _jsonl(lines)
    upload = client.files.create(file=("batch.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint=GEN,
                                  completion_window="24h", metadata={"test": "e2e"})
    assert batch.status == "validating" and batch.metadata == {"test": "e2e"}
    deadline = time.time() + timeout
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.time() < deadline, batch
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
    return batch


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def _pixels(b64: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(b64))).tobytes()


def test_twenty_generations_complete_each_like_a_live_answer(rig: Rig) -> None:
    client = rig.client()
    started = time.time()
    batch = _run(client, [_line(i) for i in range(20)])
    print(f"20-line batch completed in {time.time() - started:.1f} s")
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 20, "completed": 20, "failed": 0}
    assert batch.error_file_id is None
    out = {x["custom_id"]: x for x in _lines(client, batch.output_file_id)}
    assert sorted(out) == sorted(f"req-{i}" for i in range(20))
    for line in out.values():
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    live = client.images.generate(prompt="1 red circles", extra_body={"seed": 100, "steps": 4},
                                  model="easel-shapes", size="64x64", response_format="b64_json")
    answer = out["req-0"]["response"]["body"]
    assert set(answer) == set(live.model_dump(exclude_none=True))
    assert answer["data"][0]["seed"] == 100
    assert _pixels(answer["data"][0]["b64_json"]) == _pixels(live.data[0].b64_json or "")
    assert batch.id in [b.id for b in client.batches.list(limit=5)]


def test_a_bad_line_fails_alone(rig: Rig) -> None:
    client = rig.client()
    data = _jsonl([_line(0), _line(1, size="13x13"), _line(2)]) + b"{not json\n" + _jsonl(
        [{**_line(3), "url": "/v1/images/edits"}])
    batch = _run(client, data)
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 2, "failed": 3}
    assert [x["custom_id"] for x in _lines(client, batch.output_file_id)] == ["req-0", "req-2"]
    errors = _lines(client, batch.error_file_id)
    assert [x["custom_id"] for x in errors] == ["req-1", None, "req-3"]
    refused = errors[0]["response"]
    assert (refused["status_code"], refused["body"]["error"]["param"]) == (400, "size")
    assert [x["error"]["code"] for x in errors[1:]] == ["invalid_json_line", "invalid_url"]


def test_another_key_sees_none_of_it(rig: Rig) -> None:
    alice, bob = rig.client(), rig.client("sk-bob")
    batch = _run(alice, [_line(0)])
    for call in (lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id),
                 lambda: bob.files.content(batch.output_file_id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in bob.batches.list()]
    with pytest.raises(openai.BadRequestError) as refused:
        bob.batches.create(input_file_id=batch.input_file_id, endpoint=GEN,
                           completion_window="24h")
    assert refused.value.body["param"] == "input_file_id"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as wrong:
        alice.batches.create(input_file_id=batch.input_file_id,
                             endpoint="/v1/chat/completions", completion_window="24h")
    assert wrong.value.body["param"] == "endpoint"  # type: ignore[index]


def test_a_worker_killed_mid_batch_changes_nothing_in_the_output(rig: Rig) -> None:
    client = rig.client()
    lines = [_line(i, steps=6) for i in range(20)]
    upload = client.files.create(file=("batch.jsonl", _jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint=GEN,
                                  completion_window="24h")
    victim = rig.workers[-1]
    _busy(rig.redis.url)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    rig.worker("batch-w1")
    deadline = time.time() + 120
    while (batch := client.batches.retrieve(batch.id)).status != "completed":
        assert batch.status in ("validating", "in_progress", "finalizing"), batch
        assert time.time() < deadline, batch
        time.sleep(0.3)
    print(f"batch completed {time.time() - killed_at:.1f} s after the worker was killed")
    out = _lines(client, batch.output_file_id)
    assert batch.request_counts.model_dump() == {"total": 20, "completed": 20, "failed": 0}
    assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(20))
    seeds = {x["custom_id"]: x["response"]["body"]["data"][0]["seed"] for x in out}
    assert seeds == {f"req-{i}": 100 + i for i in range(20)}
    images = {x["response"]["body"]["data"][0]["b64_json"] for x in out}
    assert len(images) == 20  # twenty distinct results, none repeated
