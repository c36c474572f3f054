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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--live", type=int, default=20, help="live requests per arm")
    p.add_argument("--lines", type=int, default=400, help="lines in the batch")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    env = {"EASEL_BATCH_POLL_SECONDS": "0.2", "EASEL_MAX_QUEUE_DEPTH": "2000"}
    with Stack(workers=args.workers, env=env) as stack, \
            httpx.Client(base_url=stack.base_url, timeout=300) as http:
        closed_loop(stack.base_url, 1, [1, 2])  # warm-up, not measured
        quiet = closed_loop(stack.base_url, 1, list(range(100, 100 + args.live)))
        batch_id = _batch(http, args.lines)
        done_before = _wait_draining(http, batch_id)
        busy = closed_loop(stack.base_url, 1, list(range(200, 200 + args.live)))
        status = http.get(f"/v1/batches/{batch_id}").json()
        drained = status["request_counts"]["completed"] - done_before
        http.post(f"/v1/batches/{batch_id}/cancel")
        deadline = time.monotonic() + 120
        while http.get(f"/v1/batches/{batch_id}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline, "the batch did not cancel"
            time.sleep(0.2)
        quiet_after = closed_loop(stack.base_url, 1, list(range(300, 300 + args.live)))
    p50 = [statistics.median(r.latencies) for r in (quiet, busy, quiet_after)]
    errors = quiet.errors + busy.errors + quiet_after.errors
    print(f"batch_live: {args.workers} worker(s), 64x64, 10 steps, one live client; "
          f"{args.live} live requests per arm; a {args.lines}-line batch behind the middle arm")
    print(f"  live p50 alone {p50[0]:.3f} s, with the batch draining {p50[1]:.3f} s "
          f"({drained} batch lines rendered meanwhile), alone again {p50[2]:.3f} s")
    print(f"  ratio (with batch / alone) {p50[1] / statistics.mean([p50[0], p50[2]]):.2f}; "
          f"live errors {errors}")


if __name__ == "__main__":
    main()
