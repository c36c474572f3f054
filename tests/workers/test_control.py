"""workers/control.py with fake pipelines (no torch): a worker whose only pipeline failed at start
serves its idle queue, answers admin loads, and once the checkpoint is fixed a load clears the
failure, points the queues and heartbeat at the pipeline and opens the metrics port once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from core import control
from core.catalog import Catalog, PipelineSpec, load_catalog
from tests.workers.test_residency import FakePipeline
from workers.control import ControlThread, attach
from workers.residency import Residency


@dataclass
class FakeQueue:
    name: str
    connection: Any = None
    serializer: Any = None
    job_class: Any = None


@dataclass
class FakeWorker:  # what follow() touches of an RQ worker
    name: str = "w-1"
    connection: Any = None
    serializer: Any = None
    job_class: Any = None
    queue_class: Any = FakeQueue
    queues: list[Any] = field(default_factory=list)
    _ordered_queues: list[Any] = field(default_factory=list)


@dataclass
class FakeHeartbeat:
    queue_names: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    report: Any = dict
    beats: int = 0

    def beat_soon(self) -> None:
        self.beats += 1


def _reply(redis: Redis, command: control.Command) -> control.Reply:
    got = redis.blpop([control.reply_key(command.id)], timeout=1)
    assert got is not None
    return control.Reply.model_validate_json(got[1])


def test_a_worker_whose_only_pipeline_failed_loads_it_once_the_checkpoint_is_fixed(
        redis: Redis) -> None:
    catalog = load_catalog(None)
    fixed = threading.Event()

    def load(spec: PipelineSpec, _catalog: Catalog) -> FakePipeline:
        if not fixed.is_set():
            raise FileNotFoundError("component 'unet' is missing")
        return FakePipeline(spec)

    failed = {"shapes": "pipeline shapes failed to load: component 'unet' is missing"}
    residency = Residency(catalog, load, {}, failed, backoff=0)
    worker, heartbeat, opened = FakeWorker(), FakeHeartbeat(), []
    attach(worker, heartbeat, residency, lambda: opened.append(1))
    assert [q.name for q in worker.queues] == [control.idle_queue("w-1")]
    assert heartbeat.queue_names == [] and heartbeat.failed == failed and opened == []
    thread = ControlThread(redis, "w-1", residency, lambda: catalog, 0)

    load_it = control.Command(op="load", pipeline="shapes")
    thread.handle(load_it)  # still broken: the reason, nothing served, no metrics port
    reply = _reply(redis, load_it)
    assert not reply.ok and "component 'unet' is missing" in str(reply.error)
    assert reply.pipelines["shapes"]["state"] == "failed" and opened == []
    assert [q.name for q in worker.queues] == [control.idle_queue("w-1")]

    fixed.set()
    load_it = control.Command(op="load", pipeline="shapes")
    thread.handle(load_it)
    reply = _reply(redis, load_it)
    assert reply.ok and reply.pipelines["shapes"]["state"] == "resident"
    assert heartbeat.failed == {} and heartbeat.queue_names == ["easel:shapes",
                                                                "easel:shapes:batch"]
    assert [q.name for q in worker._ordered_queues] == heartbeat.queue_names
    assert heartbeat.report()["pipelines"]["shapes"]["state"] == "resident"
    assert opened == [1]
    residency.unload("shapes")
    residency.load("shapes")
    assert opened == [1]  # once


def test_a_worker_serving_at_start_opens_its_metrics_port_at_once() -> None:
    catalog = load_catalog(None)
    residency = Residency(catalog, lambda s, c: FakePipeline(s),
                          {"shapes": FakePipeline(catalog.pipelines["shapes"])}, {}, backoff=0)
    worker, heartbeat, opened = FakeWorker(), FakeHeartbeat(), []
    attach(worker, heartbeat, residency, lambda: opened.append(1))
    assert opened == [1] and heartbeat.queue_names == ["easel:shapes", "easel:shapes:batch"]
