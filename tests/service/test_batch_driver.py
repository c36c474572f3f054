"""The batch driver against a private Redis, local storage and a fake background runner: bounded
hand-over at priority `batch`, one answer per custom_id, takeover by another gateway's driver
once the lease lapses, cancel, expiry, and the events it sends."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.settings import GatewaySettings
from core.storage import LocalStorage
from service.batch_driver import BatchDriver
from service.batches import BatchStore
from service.files import FileStore
from tests.support import RedisServer

GEN = "/v1/images/generations"


@dataclass
class Job:
    id: str
    status: str
    request: dict[str, Any]
    status_code: int | None = None
    body: dict[str, Any] | None = None


class FakeRunner:
    """The background runner's interface; `finish` plays the workers."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.most_queued = 0

    async def submit(self, *, owner: str | None, endpoint: str, body: dict[str, Any],
                     priority: str, batch_id: str | None, job_id: str, base_url: str) -> Job:
        assert (priority, endpoint, owner) == ("batch", GEN, "alice")
        job = self.jobs.setdefault(job_id, Job(job_id, "queued", body))
        self.most_queued = max(self.most_queued, self.waiting())
        return job

    async def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def cancel(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        if job.status == "queued":
            job.status = "cancelled"
        return job

    def waiting(self) -> int:
        return sum(j.status in ("queued", "in_progress") for j in self.jobs.values())

    def finish(self, most: int = 1000) -> None:
        for job in [j for j in self.jobs.values() if j.status == "queued"][:most]:
            if job.request["prompt"] == "refused":
                job.status, job.status_code = "failed", 400
                job.body = {"error": {"message": "no", "type": "invalid_request_error",
                                      "param": "prompt", "code": "x"}}
            else:
                job.status, job.status_code = "completed", 200
                job.body = {"created": 1, "data": [{"b64_json": job.request["prompt"]}]}


@dataclass
class Rig:
    redis: Redis
    files: FileStore
    batches: BatchStore
    runner: FakeRunner
    events: list[tuple[str, str]]

    def driver(self, **settings: Any) -> BatchDriver:
        base = {"batch_max_in_flight": 3, "batch_lease_seconds": 0.3}
        async def notify(kind: str, data: dict[str, Any]) -> None:
            self.events.append((kind, data["id"]))
        return BatchDriver(self.redis, self.batches, self.files,
                           GatewaySettings(**{**base, **settings}), lambda: self.runner, notify)

    async def batch(self, prompts: list[str], extra: bytes = b"", window: int = 3600) -> str:
        lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": GEN,
                             "body": {"prompt": p}}).encode() for i, p in enumerate(prompts)]
        data = b"\n".join(lines) + b"\n" + extra
        stored = await self.files.add("alice", "in.jsonl", "batch", io.BytesIO(data), len(data))
        return await self.batches.create("alice", GEN, stored.id, {"k": "v"}, window, None, "")

    async def output(self, batch: dict[str, Any], name: str) -> list[dict[str, Any]]:
        data = await self.files.read("alice", batch[name])
        return [json.loads(line) for line in data.decode().splitlines()]

    async def public(self, batch_id: str) -> dict[str, Any]:
        return await self.batches.public(await self.batches.owned("alice", batch_id))


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def _run(server: RedisServer, tmp_path: Path, test: Any) -> None:
    async def go() -> None:
        redis = Redis.from_url(server.url)
        files = FileStore(redis, LocalStorage(tmp_path / "files"), 3600)
        await test(Rig(redis, files, BatchStore(redis, 3600), FakeRunner(), []))
        await redis.aclose()

    asyncio.run(go())


async def _drive(rig: Rig, driver: BatchDriver, batch_id: str, final: str,
                 finish: int = 1000) -> dict[str, Any]:
    deadline = time.time() + 10
    while (batch := await rig.public(batch_id))["status"] != final:
        assert time.time() < deadline, batch
        await driver.pass_once()
        rig.runner.finish(finish)
    return batch


def test_a_batch_completes_with_one_answer_per_line_and_bad_lines_alone(
        server: RedisServer, tmp_path: Path) -> None:
    async def test(rig: Rig) -> None:
        batch_id = await rig.batch(["a", "b", "refused", "c", "d"], b"{broken\n")
        batch = await _drive(rig, rig.driver(), batch_id, "completed", finish=2)
        assert rig.runner.most_queued <= 3  # batch_max_in_flight
        assert batch["request_counts"] == {"total": 6, "completed": 4, "failed": 2}
        assert batch["finalizing_at"] and batch["completed_at"] and batch["in_progress_at"]
        out = await rig.output(batch, "output_file_id")
        assert [(x["custom_id"], x["response"]["body"]["data"][0]["b64_json"]) for x in out] == [
            ("r0", "a"), ("r1", "b"), ("r3", "c"), ("r4", "d")]
        assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in out)
        errors = await rig.output(batch, "error_file_id")
        assert [(x["custom_id"], x["response"] and x["response"]["status_code"],
                 x["error"] and x["error"]["code"]) for x in errors] == [
            ("r2", 400, None), (None, None, "invalid_json_line")]
        assert rig.events == [("batch.completed", batch_id)]
        assert (await rig.files.get("alice", batch["output_file_id"])).purpose == "batch_output"

    _run(server, tmp_path, test)


def test_another_driver_takes_over_and_no_line_is_answered_twice(
        server: RedisServer, tmp_path: Path) -> None:
    async def test(rig: Rig) -> None:
        batch_id = await rig.batch([f"p{i}" for i in range(7)])
        first = rig.driver()
        await first.pass_once()  # validates
        await first.pass_once()  # hands 3 lines over, then its gateway "dies"
        assert rig.runner.waiting() == 3
        second = rig.driver()
        await second.pass_once()
        assert (await rig.public(batch_id))["request_counts"]["completed"] == 0  # still leased
        batch = await _drive(rig, second, batch_id, "completed")
        out = await rig.output(batch, "output_file_id")
        assert sorted(x["custom_id"] for x in out) == [f"r{i}" for i in range(7)]
        assert len(rig.runner.jobs) == 7  # each line was handed over as one job

    _run(server, tmp_path, test)


def test_cancel_stops_the_batch_with_what_completed(server: RedisServer,
                                                     tmp_path: Path) -> None:
    async def test(rig: Rig) -> None:
        batch_id = await rig.batch([f"p{i}" for i in range(6)])
        driver = rig.driver()
        await driver.pass_once()
        await driver.pass_once()
        rig.runner.finish(1)  # one line rendered, two still queued
        assert await rig.batches.move(batch_id, ("in_progress",), "cancelling")
        batch = await _drive(rig, driver, batch_id, "cancelled", finish=0)
        assert batch["request_counts"]["completed"] == 1 and batch["cancelled_at"]
        assert [x["custom_id"] for x in await rig.output(batch, "output_file_id")] == ["r0"]
        assert len(rig.runner.jobs) == 3  # nothing handed over after the cancel
        assert rig.events == [("batch.cancelled", batch_id)]

    _run(server, tmp_path, test)


def test_an_expired_batch_reports_what_never_ran(server: RedisServer, tmp_path: Path) -> None:
    async def test(rig: Rig) -> None:
        batch_id = await rig.batch(["a", "b"], window=1)
        driver = rig.driver()
        await driver.pass_once()
        deadline = time.time() + 5
        while time.time() < int((await rig.public(batch_id))["expires_at"]):
            assert time.time() < deadline
            await asyncio.sleep(0.05)
        batch = await _drive(rig, driver, batch_id, "expired", finish=0)
        errors = await rig.output(batch, "error_file_id")
        assert {x["error"]["code"] for x in errors} == {"batch_expired"}
        assert rig.events == [("batch.expired", batch_id)]

    _run(server, tmp_path, test)


def test_an_empty_input_file_fails_the_batch(server: RedisServer, tmp_path: Path) -> None:
    async def test(rig: Rig) -> None:
        stored = await rig.files.add("alice", "e.jsonl", "batch", io.BytesIO(b"\n"), 1)
        batch_id = await rig.batches.create("alice", GEN, stored.id, None, 60, None, "")
        batch = await _drive(rig, rig.driver(), batch_id, "failed")
        assert batch["errors"]["data"][0]["code"] == "empty_file" and batch["failed_at"]
        assert rig.events == [("batch.failed", batch_id)]

    _run(server, tmp_path, test)
