"""Live latency with and without a large batch draining behind it (issue 14).

    python -m benchmarks.batch_live                    # 20 live requests per arm, 400-line batch
    python -m benchmarks.batch_live --live 10 --lines 200 --workers 1

One stack (private Redis, gateway, workers).  Arms, in this order on the same processes: live
requests alone, live requests while a batch of `--lines` generations drains behind them (the
batch is cancelled afterwards), live requests alone again.  Live requests are sequential (one
client), so their latency is service time plus whatever they wait behind.  Prints p50 of each
arm and the ratio of the batch arm's p50 to the mean of the two quiet arms' p50s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from benchmarks.common import Stack, body, closed_loop
from benchmarks.report import Goal, Report

GEN = "/v1/images/generations"


def _batch(http: httpx.Client, lines: int) -> str:
    data = b"".join(json.dumps({"custom_id": f"b{i}", "method": "POST", "url": GEN,
                                "body": body(50_000 + i)}).encode() + b"\n"
                    for i in range(lines))
    upload = http.post("/v1/files", data={"purpose": "batch"},
                       files={"file": ("bench.jsonl", data)}).json()
    batch = http.post("/v1/batches", json={"input_file_id": upload["id"], "endpoint": GEN,
                                           "completion_window": "24h"}).json()
    return str(batch["id"])


def _wait_draining(http: httpx.Client, batch_id: str, timeout: float = 60) -> int:
    """Until some lines are done: the batch is really rendering behind the live requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = http.get(f"/v1/batches/{batch_id}").json()["request_counts"]
        if counts["completed"] >= 2:
            return int(counts["completed"])
        time.sleep(0.2)
    raise TimeoutError("the batch did not start")


def run(quick: bool = False, live: int = 20, lines: int = 400, workers: int = 2) -> Report:
    if quick:
        live, lines, workers = 6, 60, 1
    env = {"EASEL_BATCH_POLL_SECONDS": "0.2", "EASEL_MAX_QUEUE_DEPTH": "2000"}
    with Stack(workers=workers, env=env) as stack, \
            httpx.Client(base_url=stack.base_url, timeout=300) as http:
        closed_loop(stack.base_url, 1, [1, 2])  # warm-up, not measured
        quiet = closed_loop(stack.base_url, 1, list(range(100, 100 + live)))
        batch_id = _batch(http, lines)
        done_before = _wait_draining(http, batch_id)
        busy = closed_loop(stack.base_url, 1, list(range(200, 200 + live)))
        status = http.get(f"/v1/batches/{batch_id}").json()
        drained = status["request_counts"]["completed"] - done_before
        http.post(f"/v1/batches/{batch_id}/cancel")
        deadline = time.monotonic() + 120
        while http.get(f"/v1/batches/{batch_id}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline, "the batch did not cancel"
            time.sleep(0.2)
        quiet_after = closed_loop(stack.base_url, 1, list(range(300, 300 + live)))
    p50 = [statistics.median(r.latencies) for r in (quiet, busy, quiet_after)]
    errors = quiet.errors + busy.errors + quiet_after.errors
    ratio = p50[1] / statistics.mean([p50[0], p50[2]])
    report = Report("batch_live: live p50 with and without a batch draining behind it")
    report.lines += [
        f"  {workers} worker(s), 64x64, 10 steps, one live client; {live} live requests per "
        f"arm; a {lines}-line batch behind the middle arm",
        f"  live p50 alone {p50[0]:.3f} s, with the batch draining {p50[1]:.3f} s "
        f"({drained} batch lines rendered meanwhile), alone again {p50[2]:.3f} s",
        f"  live errors {errors}"]
    # Renders are not pre-empted: a live request may wait for one batch render, no more.
    report.goals.append(Goal("live p50 with batch / alone", ratio, "<= 1.5",
                             ratio <= 1.5 and errors == 0))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="6 live requests, a 60-line batch")
    p.add_argument("--live", type=int, default=20, help="live requests per arm")
    p.add_argument("--lines", type=int, default=400, help="lines in the batch")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(run(args.quick, args.live, args.lines, args.workers).text(), flush=True)


if __name__ == "__main__":
    main()
