"""Worker liveness keys against a real Redis: names per process start, expiry, per-queue counts."""

from __future__ import annotations

import time

from redis import Redis

from core import liveness


def test_each_process_start_gets_a_name_of_its_own() -> None:
    names = {liveness.process_name("easel-up-worker-0") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("easel-up-worker-0-") for n in names)


def test_a_worker_that_stops_beating_drops_out_after_its_ttl(redis: Redis) -> None:
    liveness.beat(redis, "a", ["q1"], ttl_seconds=0.3)
    liveness.beat(redis, "b", ["q1", "q2"], ttl_seconds=30, extra={"busy": True})
    assert liveness.live_counts(redis, ["q1", "q2", "q3"]) == {"q1": 2, "q2": 1, "q3": 0}
    assert liveness.live_workers(redis)["b"]["busy"] is True
    time.sleep(0.4)  # the TTL under test (0.3 s)
    assert set(liveness.live_workers(redis)) == {"b"}
    assert redis.smembers(liveness.WORKERS_SET) == {b"b"}  # the dead name is swept too


def test_a_clean_exit_leaves_at_once(redis: Redis) -> None:
    liveness.beat(redis, "c", ["q1"], ttl_seconds=30)
    liveness.forget(redis, "c")
    assert liveness.live_count(redis, "q1") == 0


def test_adapter_failures_for_readiness_and_the_ones_no_worker_can_apply(redis: Redis) -> None:
    """Readiness lists every live worker's failed adapters; the gateway refuses only those that
    failed on every worker serving the queue (an asleep pipeline reports none: it may load)."""
    def pipelines(**failed: str) -> dict[str, object]:
        return {"pipelines": {"p": {"state": "resident", "adapters": ["ok"],
                                    "failed_adapters": failed}}}

    assert liveness.Fleet.read(redis).serving("easel:p", "p") == (0, {})
    liveness.beat(redis, "w1", ["easel:p"], 30, pipelines(bad="bad: header", worse="worse: x"))
    assert liveness.Fleet.read(redis).serving("easel:p", "p") == (1, {"bad": "bad: header",
                                                           "worse": "worse: x"})
    liveness.beat(redis, "w2", ["easel:p"], 30, pipelines(bad="bad: header"))
    liveness.beat(redis, "w3", ["easel:q"], 30, pipelines(other="other: y"))
    assert liveness.Fleet.read(redis).serving("easel:p", "p") == (2, {"bad": "bad: header"})
    assert liveness.Fleet.read(redis).adapter_failures() == {"p": {"bad": "bad: header",
                                                      "other": "other: y", "worse": "worse: x"}}
    liveness.beat(redis, "w4", ["easel:p"], 30, {"pipelines": {"p": {"state": "asleep"}}})
    assert liveness.Fleet.read(redis).serving("easel:p", "p") == (3, {})


def test_one_read_answers_every_question_of_one_moment(redis: Redis) -> None:
    """Readiness asks a Fleet four questions: they come from the heartbeats as read once."""
    liveness.beat(redis, "w1", ["easel:p"], 30, {"failed": {"q": "q: no weights"},
                                                 "unloaded": ["r"]})
    fleet = liveness.Fleet.read(redis)
    liveness.forget(redis, "w1")  # after the read: the snapshot keeps what it saw
    assert fleet.counts(["easel:p", "easel:q"]) == {"easel:p": 1, "easel:q": 0}
    assert fleet.load_failures() == {"q": "q: no weights"}
    assert set(fleet.unloaded()) == {"r"}
    assert liveness.Fleet.read(redis).counts(["easel:p"]) == {"easel:p": 0}
