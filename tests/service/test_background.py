"""Background jobs' store and API against a real Redis: submit, claim, lease, recover, cancel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from rq.serializers import JSONSerializer

from core.jobs import RENDER_TASK, Outcome
from core.storage import LocalStorage
from service.background import BackgroundJobs
from service.job_store import CLAIMED, JobRecord, JobStore
from service.queue import JobQueue
from service.uploads import Uploaded


def _async(redis: Redis) -> AsyncRedis:
    return AsyncRedis.from_url("redis://{host}:{port}/0".format(
        **redis.connection_pool.connection_kwargs))


def _jobs(redis: Redis, tmp_path: Any, lease: float = 5.0) -> BackgroundJobs:
    store = JobStore(_async(redis), ttl_seconds=600, lease_seconds=lease)
    return BackgroundJobs(store, JobQueue(redis, 60, 0, 60), LocalStorage(tmp_path), 60)


def test_submit_stores_and_queues_and_a_known_id_is_not_queued_twice(
        redis: Redis, tmp_path: Any) -> None:
    async def run() -> tuple[JobRecord, JobRecord, JobRecord | None]:
        jobs = _jobs(redis, tmp_path)
        first = await jobs.submit(owner="alice", endpoint="/v1/images/generations",
                                  body={"prompt": "x"}, priority="batch", batch_id="batch_1",
                                  job_id="batch_1-line-3")
        again = await jobs.submit(owner="alice", endpoint="/v1/images/generations",
                                  body={"prompt": "other"}, priority="batch",
                                  job_id="batch_1-line-3")
        return first, again, await jobs.get("batch_1-line-3")

    first, again, stored = asyncio.run(run())
    assert stored is not None and stored == first == again
    assert stored.status == "queued" and stored.request == {"prompt": "x"}
    assert redis.zcard("easel:bg:pending:batch") == 1
    assert 0 < redis.pttl("easel:bg:job:batch_1-line-3") <= 600_000


def test_bad_submits_are_refused(redis: Redis, tmp_path: Any) -> None:
    jobs = _jobs(redis, tmp_path)
    with pytest.raises(ValueError):
        asyncio.run(jobs.submit(owner=None, endpoint="/v1/chat", body={}))
    with pytest.raises(ValueError):
        asyncio.run(jobs.submit(owner=None, endpoint="/v1/images/edits", body={},
                                priority="urgent"))


def test_a_claim_lapses_unless_renewed_and_recovery_requeues_it(
        redis: Redis, tmp_path: Any) -> None:
    async def run() -> list[Any]:
        jobs = _jobs(redis, tmp_path, lease=0.3)
        store = jobs.store
        record = await jobs.submit(owner=None, endpoint="/v1/images/generations", body={})
        seen: list[Any] = [await store.claim("live"), await store.claim("live")]
        for _ in range(3):  # renewed: never recovered
            await asyncio.sleep(0.15)
            await store.renew([record.id])
            seen.append(await store.recover())
        await asyncio.sleep(0.4)  # not renewed: the runner "died"
        seen.append(await store.recover())
        seen.append(await store.claim("live"))
        return seen

    job_claimed, nothing, *renewed, recovered, reclaimed = asyncio.run(run())
    assert job_claimed is not None and nothing is None
    assert renewed == [0, 0, 0] and recovered == 1 and reclaimed == job_claimed


def test_cancel_takes_a_pending_job_or_a_queued_render_but_not_a_running_one(
        redis: Redis, tmp_path: Any) -> None:
    async def run() -> list[Any]:
        jobs = _jobs(redis, tmp_path)
        held = await jobs.submit(owner=None, endpoint="/v1/images/generations", body={})
        running = await jobs.submit(owner=None, endpoint="/v1/images/generations", body={})
        for _ in range(2):  # both held by a runner (first come, first claimed) ...
            await jobs.store.claim("live")
        pending = await jobs.submit(owner=None, endpoint="/v1/images/generations", body={})
        await jobs.store.transition(JobRecord(**{**held.__dict__, "status": "in_progress"}),
                                    ("queued",))
        # ... held's render waits in its RQ queue; running's has been started by a worker
        queue = Queue("easel:shapes", connection=redis, serializer=JSONSerializer)
        for job in (held, running):
            queue.enqueue_call(RENDER_TASK, args=({},), job_id=job.render_id)
        queue.remove(running.render_id)
        redis.hset(f"rq:job:{running.render_id}", "status", "started")
        return [await jobs.cancel(pending.id), await jobs.cancel(held.id),
                await jobs.cancel(running.id), await jobs.cancel(pending.id),
                await jobs.cancel("imgjob_unknown")]

    pending, held, running, again, unknown = asyncio.run(run())
    assert pending.status == "cancelled" and pending.finished_at is not None
    assert held.status == "cancelled" and redis.llen("rq:queue:easel:shapes") == 0
    assert Outcome.model_validate_json(redis.get(f"easel:outcome:{held.render_id}") or b"{}"
                                       ).error_type == "cancelled"  # wakes its runner
    assert running.status == "queued"  # never claimed in this test: stored status
    assert again.status == "cancelled" and unknown is None


def test_finish_is_compare_and_set_and_clears_a_multipart_jobs_uploads(
        redis: Redis, tmp_path: Any) -> None:
    async def run() -> tuple[bool, bool, JobRecord | None, dict[str, Any]]:
        jobs = _jobs(redis, tmp_path)
        stored = await jobs.store_upload(Uploaded({"prompt": "x"}, [b"img"], b"mask"))
        record = await jobs.submit(owner="a", endpoint="/v1/images/edits", body=stored,
                                   multipart=True)
        upload = await jobs.load_upload(record.request)
        assert (upload.fields, upload.images, upload.mask) == ({"prompt": "x"}, [b"img"],
                                                               b"mask")
        done = await jobs.finish(record, 200, {"created": 1, "data": []})
        late = await jobs.finish(record, 500, {"error": {}})  # already final: ignored
        return done, late, await jobs.get(record.id), stored

    done, late, record, stored = asyncio.run(run())
    assert done and not late
    assert record is not None and record.status == "completed"
    assert record.status_code == 200 and record.body == {"created": 1, "data": []}
    assert stored["images"][0].startswith("inputs/")  # never a served key
    assert not (tmp_path / stored["images"][0]).exists()


def test_render_ids_are_fixed_per_job_and_reveal_nothing() -> None:
    a = JobRecord(id="imgjob_a", owner=None, endpoint="/v1/images/generations", status="queued")
    assert a.render_id == JobRecord(**{**a.__dict__, "status": "failed"}).render_id
    assert len(a.render_id) == 32 and "imgjob" not in a.render_id
    assert a.render_id != JobRecord(**{**a.__dict__, "id": "imgjob_b"}).render_id


def test_claimed_zset_stays_empty_after_finishing(redis: Redis, tmp_path: Any) -> None:
    async def run() -> None:
        jobs = _jobs(redis, tmp_path)
        record = await jobs.submit(owner=None, endpoint="/v1/images/generations", body={})
        await jobs.store.claim("live")
        await jobs.store.release(record.id)

    t0 = time.monotonic()
    asyncio.run(run())
    assert redis.zcard(CLAIMED) == 0 and time.monotonic() - t0 < 5
