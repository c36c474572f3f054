"""Faults against real processes: kill -9 a worker mid-job, restart Redis, SIGTERM, overload."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis import Redis

from core import liveness
from core.jobs import RenderJob, new_job_id
from service.queue import JobQueue
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

SLOW = {"steps": 60, "seed": 1}  # long enough (several seconds) for jobs to queue behind it
# A kill lands as soon as the worker reports the job in hand, so a shorter job is enough there.
KILLABLE = {"steps": 30, "seed": 1}
# Recovery timings as settings: a dead worker is noticed within ~3 s, not 15-20 s.
FAST_RECOVERY = {"EASEL_HEARTBEAT_SECONDS": "0.5", "EASEL_LIVENESS_TTL_SECONDS": "3",
                 "EASEL_REAPER_SECONDS": "0.5"}


@dataclass
class Rig:
    redis: RedisServer
    env: dict[str, str]
    gateway: Gateway
    workers: list[subprocess.Popen]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gateway.base_url}/v1", api_key="x",
                             max_retries=0, timeout=120)

    def worker(self, name: str) -> subprocess.Popen:
        proc = start_worker(self.env, name)
        self.workers.append(proc)
        return proc


@pytest.fixture()
def rig(tmp_path: Path) -> Iterator[Rig]:
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = base_env(redis.url, tmp_path, EASEL_MAX_BATCH_IMAGES="1", **FAST_RECOVERY)
    r = Rig(redis, env, Gateway(env).start(), [])
    try:
        yield r
    finally:
        r.gateway.stop()
        for w in r.workers:
            stop(w, signal.SIGKILL)
        redis.stop()


def _busy(redis_url: str, timeout: float = 60, images: int = 0) -> str:
    """Wait until some worker reports a job in hand (with `images`: that many images inside a
    pipeline call right now); returns that worker's name."""
    redis = Redis.from_url(redis_url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for name, info in liveness.live_workers(redis).items():
            if info.get("busy") and info.get("rendering", 0) >= images:
                return name
        time.sleep(0.05)
    raise TimeoutError("no worker became busy")


def _rq_job(redis_url: str, job_id: str) -> Any:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    return Job.fetch(job_id, connection=Redis.from_url(redis_url), serializer=JSONSerializer)


def _job_id(data: Any) -> str:
    """The job id of a delivered image, from the seed-bearing response (b64: from Redis)."""
    return str(data.url.rsplit("/", 2)[-2])


def _in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        t0 = time.time()
        try:
            box["result"] = fn()
        except Exception as exc:
            box["error"] = exc
        box["seconds"] = time.time() - t0

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_killed_worker_restarted_under_its_own_name_reruns_the_job(rig: Rig) -> None:
    """The path a container restart takes: the same configured name (same hostname, pid 1)
    comes back at once, and the restarted process itself re-runs the dead one's job."""
    victim = rig.worker("w")
    wait_ready(rig.gateway.base_url)
    thread, box = _in_background(lambda: rig.client().images.generate(
        prompt="two red circles", model="easel-shapes", size="64x64", n=2,
        response_format="url", extra_body=KILLABLE))
    dead = _busy(rig.redis.url)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    rig.worker("w")  # the supervisor's restart: same EASEL_NAME
    thread.join(120)
    assert "error" not in box, box.get("error")
    assert len(box["result"].data) == 2
    rescuer = _rq_job(rig.redis.url, _job_id(box["result"].data[0])).worker_name
    assert rescuer.startswith("w-") and rescuer != dead, (rescuer, dead)
    # liveness TTL (3 s) + reaper (0.5 s) + the re-render itself; bounded well below 60 s
    assert time.time() - killed_at < 45
    print(f"killed worker's job answered {time.time() - killed_at:.1f} s after the kill")


def test_a_job_that_keeps_killing_workers_fails_cleanly(rig: Rig) -> None:
    env = dict(rig.env, EASEL_JOB_RETRIES="0")
    gateway = Gateway(env).start()
    try:
        victim = rig.worker("victim")
        wait_ready(gateway.base_url)
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0,
                               timeout=120)
        thread, box = _in_background(lambda: client.images.generate(
            prompt="a red circle", model="easel-shapes", size="64x64", extra_body=KILLABLE))
        _busy(rig.redis.url)
        victim.send_signal(signal.SIGKILL)
        thread.join(120)
        error = box.get("error")
        assert isinstance(error, openai.InternalServerError), box
        assert "died" in str(error)
        assert box["seconds"] < 60
        print(f"job out of retries failed after {box['seconds']:.1f} s")
    finally:
        gateway.stop()


def test_redis_restart_503_then_recovery_and_queued_jobs_survive(rig: Rig) -> None:
    rig.worker("w1")
    wait_ready(rig.gateway.base_url)
    # An accepted job waiting in the queue while no worker takes it...
    for w in rig.workers:
        stop(w)
    queued = RenderJob(job_id=new_job_id(), model="easel-shapes", pipeline="shapes",
                       prompt="a blue square", width=64, height=64, n=1, seeds=[3], steps=4,
                       guidance=5.0)
    JobQueue(Redis.from_url(rig.redis.url), 600, 2, 3600).enqueue("easel:shapes", queued)
    time.sleep(1.5)  # appendfsync everysec
    rig.redis.stop()
    r = httpx.post(f"{rig.gateway.base_url}/v1/images/generations",
                   json={"prompt": "a red circle"}, timeout=30)
    assert r.status_code == 503 and r.headers.get("retry-after")
    assert r.json()["error"]["type"] == "server_error"
    rig.redis.start()  # same port, same AOF directory
    rig.worker("w2")
    wait_ready(rig.gateway.base_url, timeout=60)
    from rq.job import Job
    from rq.serializers import JSONSerializer

    redis = Redis.from_url(rig.redis.url)
    deadline = time.time() + 60
    while Job.fetch(queued.job_id, connection=redis,
                    serializer=JSONSerializer).get_status() != "finished":
        assert time.time() < deadline, "the queued job did not survive the restart"
        time.sleep(0.2)
    ok = rig.client().images.generate(prompt="a red circle", size="256x256",
                                      response_format="b64_json", extra_body={"steps": 4})
    assert ok.data[0].b64_json
    # Again with the worker running: it reconnects by itself, nobody restarts it.
    rig.redis.stop()
    time.sleep(2)
    rig.redis.start()
    wait_ready(rig.gateway.base_url, timeout=60)
    again = rig.client().images.generate(prompt="a blue circle", size="256x256",
                                         response_format="b64_json", extra_body={"steps": 4})
    assert again.data[0].b64_json and rig.workers[-1].poll() is None


def test_sigterm_finishes_the_current_job_then_exits(rig: Rig) -> None:
    worker = rig.worker("graceful")
    wait_ready(rig.gateway.base_url)
    thread, box = _in_background(lambda: rig.client().images.generate(
        prompt="a green triangle", model="easel-shapes", size="64x64",
        response_format="b64_json", extra_body=SLOW))
    _busy(rig.redis.url)
    worker.send_signal(signal.SIGTERM)
    thread.join(120)
    assert "error" not in box, box.get("error")
    assert worker.wait(30) == 0


def test_full_queue_answers_429_with_retry_after(rig: Rig) -> None:
    env = dict(rig.env, EASEL_MAX_QUEUE_DEPTH="1")
    gateway = Gateway(env).start()
    try:
        rig.worker("w")
        wait_ready(gateway.base_url)
        body = {"prompt": "a red circle", "model": "easel-shapes", "size": "64x64", **SLOW}
        url = f"{gateway.base_url}/v1/images/generations"
        first, _ = _in_background(lambda: httpx.post(url, json=body, timeout=120))
        _busy(rig.redis.url)
        second, box = _in_background(lambda: httpx.post(url, json=body, timeout=120))
        queue = JobQueue(Redis.from_url(rig.redis.url), 600, 2, 3600)
        deadline = time.time() + 30
        while queue.depth("easel:shapes") < 1:  # the second job waits behind the first
            assert time.time() < deadline
            time.sleep(0.05)
        r = httpx.post(url, json=body, timeout=120)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "queue_full"
        first.join(120)
        second.join(120)
        assert box["result"].status_code == 200
    finally:
        gateway.stop()


def test_killed_worker_mid_batch_every_job_is_rerun(rig: Rig) -> None:
    env = dict(rig.env, EASEL_MAX_BATCH_IMAGES="8", EASEL_MAX_BATCH_WAIT_MS="500")
    victim = start_worker(env, "batch-victim")
    rig.workers.append(victim)
    wait_ready(rig.gateway.base_url)
    # Frozen while the three requests queue up, the worker then drains them into one batch.
    victim.send_signal(signal.SIGSTOP)
    runs = [_in_background(lambda s=s: rig.client().images.generate(
        prompt="a red circle", model="easel-shapes", size="64x64", response_format="url",
        extra_body={"steps": 30, "seed": s})) for s in range(3)]
    queue = JobQueue(Redis.from_url(rig.redis.url), 600, 2, 3600)
    deadline = time.time() + 30
    while queue.depth("easel:shapes") < 3:
        assert time.time() < deadline, "the three requests were not queued"
        time.sleep(0.02)
    victim.send_signal(signal.SIGCONT)
    # The worker's beat says when three images are inside one pipeline call: kill it there.
    dead = _busy(rig.redis.url, images=3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rig.worker("rescuer")
    for thread, box in runs:
        thread.join(120)
        assert "error" not in box, box.get("error")
        done_by = _rq_job(rig.redis.url, _job_id(box["result"].data[0])).worker_name
        assert done_by.startswith("rescuer-") and done_by != dead, (done_by, dead)


@pytest.mark.parametrize("stream", [False, True], ids=["request", "stream"])
def test_a_client_that_hangs_up_has_its_queued_job_cancelled_quietly(
        rig: Rig, tmp_path: Path, stream: bool) -> None:
    """EASEL_ON_DISCONNECT=cancel: a plain request or a stream whose client leaves while its job
    waits behind another is taken off the queue, and the gateway logs no stray task or error."""
    log = tmp_path / "gateway.log"
    gateway = Gateway(dict(rig.env, EASEL_ON_DISCONNECT="cancel"), log=log).start()
    try:
        rig.worker("w")
        wait_ready(gateway.base_url)
        url = f"{gateway.base_url}/v1/images/generations"
        body = {"prompt": "a red circle", "model": "easel-shapes", "size": "64x64", **SLOW}
        first, _ = _in_background(lambda: httpx.post(url, json=body, timeout=120))
        _busy(rig.redis.url)
        if stream:
            with httpx.stream("POST", url, timeout=120, json=dict(
                    body, stream=True, partial_images=2, model="gpt-image-1",
                    size="1024x1024")) as r:
                assert r.status_code == 200  # admitted, queued; hangs up before any event
        else:
            with pytest.raises(httpx.ReadTimeout):  # gives up while its job is queued
                httpx.post(url, json=body, timeout=httpx.Timeout(120, read=1.5))
        from rq import Queue
        from rq.serializers import JSONSerializer

        queue = Queue("easel:shapes", connection=Redis.from_url(rig.redis.url),
                      serializer=JSONSerializer)
        deadline = time.time() + 10
        while not (canceled := queue.canceled_job_registry.get_job_ids()):
            assert time.time() < deadline, "the abandoned job was not cancelled"
            time.sleep(0.05)
        assert len(canceled) == 1 and queue.count == 0
        assert _rq_job(rig.redis.url, canceled[0]).get_status() == "canceled"
        first.join(120)
    finally:
        gateway.stop()
    text = log.read_text()
    assert "Task was destroyed" not in text and "Traceback" not in text, text[-3000:]
