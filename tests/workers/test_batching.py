"""Cross-request batching in a real RQ worker (in-process, burst mode) against real Redis."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from core.catalog import load_catalog
from core.jobs import RENDER_TASK, RenderJob, new_job_id
from core.settings import WorkerSettings
from core.storage import LocalStorage
from models import rendering
from models.loading import load_pipeline
from tests.support import RedisServer
from workers import runtime
from workers.worker import EaselWorker


@pytest.fixture(scope="module")
def loaded() -> Any:
    return load_pipeline(load_catalog(None).pipelines["shapes"])


@pytest.fixture()
def env(tmp_path: Path, loaded: Any) -> Iterator[tuple[Redis, Queue, LocalStorage]]:
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url)
    storage = LocalStorage(tmp_path / "files")
    # Pixels as rendered: the watermark's quantization can turn the 1-level float differences
    # between a batched and a lone render into a few (tests/workers/test_watermark.py).
    settings = WorkerSettings(watermark=False, output_classifier="off")
    runtime.install(runtime.Runtime(settings, {"shapes": loaded}, storage))
    yield redis, Queue("easel:shapes", connection=redis, serializer=JSONSerializer), storage
    server.stop()


def _job(prompt: str, seed: int, n: int = 1, best_of: int = 1) -> RenderJob:
    return RenderJob(job_id=new_job_id(), model="easel-shapes", pipeline="shapes", prompt=prompt,
                     width=64, height=64, n=n, seeds=[seed + i for i in range(n)], steps=4,
                     guidance=5.0, best_of=best_of)


def _run(redis: Redis, queue: Queue, jobs: list[RenderJob], max_batch: int) -> list[Job]:
    for job in jobs:
        queue.enqueue_call(RENDER_TASK, args=(job.model_dump(mode="json"),), job_id=job.job_id)
    worker = EaselWorker([queue], connection=redis, serializer=JSONSerializer)
    worker.max_batch_images = max_batch
    worker.work(burst=True)
    return [Job.fetch(j.job_id, connection=redis, serializer=JSONSerializer) for j in jobs]


def _count_calls(monkeypatch: pytest.MonkeyPatch, fail_batches: bool = False) -> list[int]:
    calls: list[int] = []
    real = rendering.generate_prompts

    def counting(loaded: Any, prompts: list[str], *a: Any, **k: Any) -> Any:
        calls.append(len(prompts))
        if fail_batches and len(prompts) > 2:
            raise RuntimeError("simulated out-of-memory in a batched call")
        return real(loaded, prompts, *a, **k)

    monkeypatch.setattr(rendering, "generate_prompts", counting)
    return calls


def test_batched_images_are_pixel_identical_to_lone_ones(env: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    redis, queue, storage = env
    calls = _count_calls(monkeypatch)
    specs = [("a red circle", 1, 1), ("two blue squares", 2, 2), ("a green triangle", 5, 1)]
    batched = _run(redis, queue, [_job(p, s, n) for p, s, n in specs], max_batch=8)
    assert calls == [4]  # three requests, four images, one pipeline call
    alone = _run(redis, queue, [_job(p, s, n) for p, s, n in specs], max_batch=1)
    assert calls[1:] == [1, 2, 1]
    for a, b in zip(batched, alone, strict=True):
        assert a.get_status() == b.get_status() == JobStatus.FINISHED
        for ka, kb in zip(a.return_value()["keys"], b.return_value()["keys"], strict=True):
            pa, pb = (np.asarray(Image.open(io.BytesIO(storage.get(k))), dtype=np.int16)
                      for k in (ka, kb))
            # Same seed -> same image. CPU BLAS kernels pick their summation order by batch
            # size, so a rare pixel may round the other way: at most 1/255, on <0.5 % of pixels.
            diff = np.abs(pa - pb)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_batch_respects_the_image_cap(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    redis, queue, _ = env
    calls = _count_calls(monkeypatch)
    _run(redis, queue, [_job("a cyan square", i) for i in range(5)], max_batch=2)
    assert calls == [2, 2, 1]


def test_best_of_jobs_count_every_candidate(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job with best_of k draws k x n images: that is what fills a batch, and each job still
    gets n images, the same ones it gets alone."""
    redis, queue, storage = env
    calls = _count_calls(monkeypatch)
    specs = [("a red circle above a blue square", 1, 1, 3), ("two green circles", 2, 2, 2),
             ("a cyan triangle", 3, 1, 2)]
    batched = _run(redis, queue, [_job(*spec) for spec in specs], max_batch=8)
    assert calls == [7, 2]  # 3 + 4 candidates fill the cap of 8; the third job's 2 wait
    alone = _run(redis, queue, [_job(*spec) for spec in specs], max_batch=1)
    assert calls[2:] == [3, 4, 2]
    for a, b, spec in zip(batched, alone, specs, strict=True):
        assert a.return_value()["seeds"] == b.return_value()["seeds"] == [
            spec[1] + i for i in range(spec[2])]
        assert len(a.return_value()["keys"]) == spec[2]
        for ka, kb in zip(a.return_value()["keys"], b.return_value()["keys"], strict=True):
            pa, pb = (np.asarray(Image.open(io.BytesIO(storage.get(k))), dtype=np.int16)
                      for k in (ka, kb))
            assert np.abs(pa - pb).max() <= 1  # the same candidate won, batched or not


def test_a_failed_batch_falls_back_to_lone_jobs(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    redis, queue, _ = env
    calls = _count_calls(monkeypatch, fail_batches=True)
    jobs = _run(redis, queue, [_job("a red square", i) for i in range(3)], max_batch=8)
    assert calls == [3, 1, 1, 1]
    assert all(j.get_status() == JobStatus.FINISHED for j in jobs)


def test_next_batch_denoises_while_the_previous_is_stored(
        env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker pipelines batches: batch 2's pipeline call starts before batch 1's images
    are encoded.  The encoder waits (up to 20 s) for that start; without the overlap it could
    only come after, so the flag below would stay unset."""
    import threading

    from workers import finishing  # images are encoded there, after the watermark

    redis, queue, storage = env
    started: list[int] = []
    second_started = threading.Event()
    real_generate, real_encode = rendering.generate_prompts, finishing.encode

    def generate(loaded: Any, prompts: list[str], *a: Any, **k: Any) -> Any:
        started.append(len(prompts))
        if len(started) >= 2:
            second_started.set()
        return real_generate(loaded, prompts, *a, **k)

    overlapped: list[bool] = []

    def encode(image: Any, *a: Any, **k: Any) -> bytes:
        if len(overlapped) < 2:  # batch 1's two images
            overlapped.append(second_started.wait(20))
        return real_encode(image, *a, **k)

    monkeypatch.setattr(rendering, "generate_prompts", generate)
    monkeypatch.setattr(finishing, "encode", encode)
    jobs = _run(redis, queue, [_job("a blue circle", i) for i in range(6)], max_batch=2)
    assert started == [2, 2, 2]
    assert overlapped == [True, True]
    assert all(j.get_status() == JobStatus.FINISHED for j in jobs)
    # and the overlapped images are still each seed's own image
    alone = _run(redis, queue, [_job("a blue circle", i) for i in range(6)], max_batch=1)
    for a, b in zip(jobs, alone, strict=True):
        for ka, kb in zip(a.return_value()["keys"], b.return_value()["keys"], strict=True):
            pa, pb = (np.asarray(Image.open(io.BytesIO(storage.get(k))), dtype=np.int16)
                      for k in (ka, kb))
            assert np.abs(pa - pb).max() <= 1


def test_a_failed_batch_never_shares_the_pipeline_with_the_next_one(
        env: Any, loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch fails while the next batch is already claimed: its jobs re-render alone on the
    main thread while the helper thread denoises the next batch.  diffusers pipelines are not
    thread-safe, so those calls must take turns.  The next batch's call waits (up to 2 s) for
    a lone re-render to enter the pipeline beside it; with the pipeline's lock none can."""
    import threading

    redis, queue, _ = env
    real = loaded.text2img
    guard = threading.Lock()
    calls: list[int] = []
    active, peak = 0, 0
    lone_entered = threading.Event()

    def tracked(**kwargs: Any) -> Any:
        nonlocal active, peak
        images = len(kwargs["prompt"])
        with guard:
            active += 1
            peak = max(peak, active)
            calls.append(images)
            first = len(calls) == 1
        try:
            if first:
                raise RuntimeError("simulated out-of-memory in a batched call")
            if images == 1:
                lone_entered.set()
            else:
                lone_entered.wait(2)
            return real(**kwargs)
        finally:
            with guard:
                active -= 1

    class Tracked:  # the real pipeline, with its calls counted
        __call__ = staticmethod(tracked)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(loaded, "text2img", Tracked())
    jobs = _run(redis, queue, [_job("a red square", i) for i in range(6)], max_batch=3)
    assert calls[:2] == [3, 3] and sorted(calls[2:]) == [1, 1, 1]
    assert peak == 1, "two threads were inside one pipeline at once"
    assert all(j.get_status() == JobStatus.FINISHED for j in jobs)


def test_a_batched_call_marks_the_worker_busy_and_its_jobs_log_the_real_render_time(
        env: Any, loaded: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The outside test read easel_worker_busy 0 at full load (the batched call ran before the
    job function set it) and a batched job logged 0.027 s for a 3.6 s render."""
    import logging
    import time

    from workers.metrics import WorkerMetrics

    redis, queue, storage = env
    metrics = WorkerMetrics()
    metrics.pipelines_loaded({"shapes": 0.1})
    runtime.install(runtime.Runtime(WorkerSettings(), {"shapes": loaded}, storage, metrics))
    during: list[tuple[int, float | None, float | None]] = []
    real = rendering.generate_prompts

    def generate(pipeline: Any, prompts: list[str], *a: Any, **k: Any) -> Any:
        value = metrics.registry.get_sample_value
        during.append((len(prompts), value("easel_worker_busy", {"pipeline": "shapes"}),
                       value("easel_jobs_running", {"pipeline": "shapes"})))
        time.sleep(0.3)
        return real(pipeline, prompts, *a, **k)

    monkeypatch.setattr(rendering, "generate_prompts", generate)
    caplog.set_level(logging.INFO, logger="easel.worker")
    jobs = _run(redis, queue, [_job("a red square", i) for i in range(3)], max_batch=8)
    assert during == [(3, 1.0, 3.0)]  # one call for three jobs, inside the busy marker
    value = metrics.registry.get_sample_value
    assert value("easel_worker_busy", {"pipeline": "shapes"}) == 0
    assert value("easel_jobs_running", {"pipeline": "shapes"}) == 0
    assert (value("easel_worker_busy_seconds_total", {"pipeline": "shapes"}) or 0) >= 0.3
    done = [r for r in caplog.records if getattr(r, "status", None) == "finished"]
    assert len(done) == 3
    assert all(r.render_seconds >= 0.3 and r.seconds >= r.render_seconds  # type: ignore[attr-defined]
               for r in done)
    batch = [r for r in caplog.records if getattr(r, "job_ids", None)]
    assert len(batch) == 1 and sorted(batch[0].job_ids) == sorted(j.id for j in jobs)  # type: ignore[attr-defined]


def test_a_job_in_hand_is_never_taken_twice_into_a_batch(env: Any) -> None:
    """A worker stopped (SIGSTOP) while Redis handed it a job is taken for dead: the reaper
    queues the job again. Resumed, the worker renders the job it holds and drops the stale
    entry instead of drawing the same job twice in one call (found by test_faults)."""
    from workers import batching

    redis, queue, _ = env
    jobs = [_job("a red circle", 1), _job("a red circle", 2)]
    for job in jobs:
        queue.enqueue_call(RENDER_TASK, args=(job.model_dump(mode="json"),), job_id=job.job_id)
    held = Job.fetch(jobs[0].job_id, connection=redis, serializer=JSONSerializer)
    queue.remove(held.id)  # the worker has it...
    queue.push_job_id(held.id, at_front=True)  # ...and the reaper put it back
    taken = batching.drain(held, queue, 8, 0.0, JSONSerializer)
    assert [j.id for j in taken] == [jobs[1].job_id]
    assert queue.get_job_ids() == []  # the stale entry is gone, not left for another worker
    queue.push_job_id(held.id)
    assert batching.claim_next(queue, 8, JSONSerializer, frozenset({held.id})) == []
    assert queue.get_job_ids() == []
