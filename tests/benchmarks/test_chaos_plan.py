"""The chaos run's pure parts (the run itself: `python -m benchmarks.chaos --quick`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from benchmarks.chaos import REDIS_DOWN, S3_DOWN, Logs, Record, plan, recovery


def test_plan_ends_spaces_faults_and_terminates_for_any_seed() -> None:
    for seed in range(300):
        for seconds in (40.0, 90.0, 150.0, 600.0):
            faults = plan(seconds, random.Random(seed))
            kinds = [f.kind for f in faults]
            assert kinds.count("redis") == 1 and kinds.count("s3") == 1
            assert [f.at for f in faults] == sorted(f.at for f in faults)
            redis = next(f.at for f in faults if f.kind == "redis")
            s3 = next(f.at for f in faults if f.kind == "s3")
            for kill in (f.at for f in faults if f.kind == "kill"):
                assert kill < seconds - 8
                assert not redis - 10 <= kill < redis + REDIS_DOWN + 10
                assert not s3 - 10 <= kill < s3 + S3_DOWN + 10
    assert [f.kind for f in plan(32, random.Random(1), quick=True)] == ["kill", "redis", "s3"]


def test_recovery_counts_only_requests_still_waiting_at_the_kill() -> None:
    fault = plan(32, random.Random(1), quick=True)[0]
    fault.started, fault.worker = 100.0, "chaos-w0"
    fault.held, fault.inflight = ["a", "b", "c"], ["a", "b"]  # c was answered just before
    recs = {r: Record(r, "generate", "easel-shapes", "64x64", 1, "b64_json", 8, 16, 90.0,
                      t1=t1, result="ok") for r, t1 in (("a", 104.0), ("b", 107.5), ("c", 99.9))}
    times, lines = recovery([fault], recs)
    assert times == [7.5] and "2 job(s) in hand" in lines[0]
    recs["b"].result = "lost"
    times, lines = recovery([fault], recs)
    assert times == [] and "NOT all delivered" in lines[0]


def test_log_trail_follows_the_request_to_its_job(tmp_path: Path) -> None:
    rows = [{"ts": "2026-01-01T00:00:02", "msg": "job j1 failed (request r1): StorageError",
             "request_id": "r1", "job_id": "j1"},
            {"ts": "2026-01-01T00:00:01", "msg": "job j1 lost its worker w; re-running it"},
            {"ts": "2026-01-01T00:00:03", "msg": "job j2 done", "request_id": "r2",
             "job_id": "j2"}]
    (tmp_path / "worker.log").write_text("not json\n" + "\n".join(map(json.dumps, rows)))
    trail = Logs(tmp_path).trail("r1")
    assert len(trail) == 2 and "lost its worker" in trail[0] and "StorageError" in trail[1]
