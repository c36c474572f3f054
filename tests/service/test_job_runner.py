"""The background runner against a real Redis, with a stand-in for the serving code."""

from __future__ import annotations

import asyncio
from typing import Any

from redis import Redis

from core.errors import OpenAIError, bad_request
from core.settings import GatewaySettings
from core.storage import LocalStorage
from service.background import BackgroundJobs
from service.dispatch import RequestContext
from service.job_runner import JobRunner
from service.job_store import CLAIMED, JobRecord, JobStore
from service.queue import JobQueue
from tests.service.test_background import _async


class Images:
    """ImageService's generate: answers (or raises) what the test queued, and records ctx."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.contexts: list[RequestContext] = []

    async def generate(self, body: Any, base_url: str, ctx: RequestContext) -> Any:
        self.contexts.append(ctx)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _runner(redis: Redis, tmp_path: Any, answers: list[Any],
            **settings: Any) -> tuple[JobRunner, Images, list[tuple[str, dict[str, Any]]]]:
    s = GatewaySettings(background_poll_seconds=0.05, background_lease_seconds=1, **settings)
    jobs = BackgroundJobs(JobStore(_async(redis), 600, s.background_lease_seconds),
                          JobQueue(redis, 60, 0, 60), LocalStorage(tmp_path), 60)
    events: list[tuple[str, dict[str, Any]]] = []

    async def send_event(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    images = Images(answers)
    return JobRunner(jobs, images, s, send_event), images, events  # type: ignore[arg-type]


async def _until_final(jobs: BackgroundJobs, job_id: str, timeout: float = 10) -> JobRecord:
    async with asyncio.timeout(timeout):
        while True:
            record = await jobs.get(job_id)
            if record is not None and record.status in ("completed", "failed", "cancelled"):
                return record
            await asyncio.sleep(0.02)


def test_jobs_complete_with_the_synchronous_body_and_announce_it(
        redis: Redis, tmp_path: Any) -> None:
    answer = {"created": 1, "data": [{"b64_json": "AAAA", "seed": 3}]}
    refused = bad_request("Invalid 'size'.", "size", "invalid_value")
    runner, images, events = _runner(redis, tmp_path, [answer, refused, answer])

    async def run() -> list[JobRecord]:
        runner.start()
        jobs = runner.jobs
        done = [await _until_final(jobs, (await jobs.submit(
            owner=owner, endpoint="/v1/images/generations", body={"prompt": "x"},
            priority=priority, batch_id=batch)).id)
            for owner, priority, batch in (("alice", "live", None), ("alice", "live", None),
                                           (None, "batch", "batch_1"))]
        await runner.stop()
        return done

    completed, failed, batch_line = asyncio.run(run())
    assert (completed.status, completed.status_code, completed.body) == ("completed", 200,
                                                                          answer)
    assert (failed.status, failed.status_code) == ("failed", 400)
    assert failed.body == refused.envelope()
    assert batch_line.status == "completed"
    ctx = images.contexts[0]
    assert ctx.background and ctx.key_name == "alice" and ctx.priority == "live"
    assert ctx.fixed_job_id == completed.render_id
    assert images.contexts[2].priority == "batch"
    # One event per single job; a batch's lines are reported by their batch.
    assert events == [("image.job.completed", {"id": completed.id}),
                      ("image.job.failed", {"id": failed.id})]
    assert redis.zcard(CLAIMED) == 0


def test_a_refusal_that_waiting_cures_puts_the_job_back_instead_of_failing_it(
        redis: Redis, tmp_path: Any) -> None:
    busy = OpenAIError(429, "Too many concurrent requests.", "rate_limit_exceeded", None,
                       "concurrency_limit_exceeded", {"Retry-After": "1"})
    runner, images, _ = _runner(redis, tmp_path, [busy, {"created": 2, "data": []}])

    async def run() -> tuple[str, JobRecord]:
        runner.start()
        record = await runner.jobs.submit(owner="a", endpoint="/v1/images/generations",
                                          body={})
        await asyncio.sleep(0.5)  # refused once; waits its Retry-After before the next try
        between = await runner.jobs.get(record.id)
        assert between is not None
        done = await _until_final(runner.jobs, record.id)
        await runner.stop()
        return between.status, done

    between, done = asyncio.run(run())
    assert between == "queued" and done.status == "completed" and len(images.contexts) == 2


def test_live_and_batch_limits_bound_what_one_runner_holds(redis: Redis, tmp_path: Any) -> None:
    class Slow(Images):
        async def generate(self, body: Any, base_url: str, ctx: RequestContext) -> Any:
            self.contexts.append(ctx)
            await asyncio.sleep(30)

    runner, _, _ = _runner(redis, tmp_path, [], background_max_live=2,
                           background_max_batch=1)
    runner.images = Slow([])  # type: ignore[assignment]

    async def run() -> tuple[int, int, int]:
        for priority in ("live",) * 3 + ("batch",) * 3:
            await runner.jobs.submit(owner=None, endpoint="/v1/images/generations", body={},
                                     priority=priority)
        runner.start()
        await asyncio.sleep(0.5)
        held = (runner.held("live"), runner.held("batch"), int(redis.zcard(CLAIMED)))
        await runner.stop()  # held jobs stay claimed: their leases lapse, others recover them
        return held

    assert asyncio.run(run()) == (2, 1, 3)
