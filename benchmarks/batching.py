"""Batching: images/s through the service at concurrency 1, 2, 4, 8, 16 with cross-request
batching on (EASEL_MAX_BATCH_IMAGES=8, the default) and off (=1), each divided by the
pipeline's own images/s called directly at batch min(concurrency, max batch).  Goal at
concurrency 8: batched service >= 0.9 of the direct batch of 8.

Both services run side by side (an idle worker blocks in Redis and costs nothing), and the
arms alternate level by level with the direct calls, so drifting background load hits all of
them; the direct calls run while both workers are idle.
"""

from __future__ import annotations

import math
import re
import statistics

from benchmarks.common import SEED0, Stack, closed_loop, direct_call, load_direct, mean_of, running
from benchmarks.report import CpuMeter, Goal, Report, main, percentile, table

MAX_BATCH = 8
LEVELS, QUICK_LEVELS = [1, 2, 4, 8, 16], [8]
GOAL_LEVEL, GOAL = 8, 0.9
_BATCHED = re.compile(r"batched (\d+) job\(s\), (\d+) image\(s\) in one call")
_DONE = re.compile(r"job \w+ done")


def _requests(concurrency: int, quick: bool) -> int:
    if quick:
        return 2 * concurrency
    # Several rounds of `concurrency` requests, so that the first round's ramp-up and the last
    # one's drain weigh little (3 rounds read ~0.91 of the direct rate at concurrency 8, 5 rounds
    # ~0.96, on the same quiet machine).
    return max(16, 5 * concurrency) if concurrency <= MAX_BATCH else 3 * concurrency


def calls_in(log: str) -> tuple[int, int]:
    """(pipeline calls, jobs) in a stretch of worker log: a batch logs one line for its call,
    and every job, batched or alone, logs its own 'done' line."""
    batched = [int(jobs) for jobs, _ in _BATCHED.findall(log)]
    done = len(_DONE.findall(log))
    return len(batched) + done - sum(batched), done


def _direct(loaded: object, batch: int, quick: bool) -> float:
    """Images/s of direct calls of `batch` images (median call), after one untimed call:
    a new batch shape allocates its buffers on the first call."""
    calls = 1 if quick else max(3, math.ceil(16 / batch))
    seeds = list(range(SEED0, SEED0 + batch))
    direct_call(loaded, seeds)
    return batch / statistics.median(direct_call(loaded, seeds) for _ in range(calls))


def run(quick: bool = False) -> Report:
    levels = QUICK_LEVELS if quick else LEVELS
    loaded = load_direct()
    service_rows, ratio_rows = [], []
    direct: dict[int, float] = {}
    ratio_at_goal = 0.0
    batched = Stack(env={"EASEL_MAX_BATCH_IMAGES": str(MAX_BATCH)})
    unbatched = Stack(env={"EASEL_MAX_BATCH_IMAGES": "1"})
    with running(batched, unbatched):
        closed_loop(batched.base_url, MAX_BATCH, [SEED0] * MAX_BATCH)  # warm-up, one batch
        closed_loop(unbatched.base_url, 1, [SEED0] * 2)
        with CpuMeter() as cpu:
            for c in levels:
                seeds = list(range(SEED0, SEED0 + _requests(c, quick)))
                row: list[object] = [c, len(seeds)]
                speed = {}
                for stack in (batched, unbatched):
                    before, offset = stack.worker_metrics()[0], len(stack.worker_logs)
                    result = closed_loop(stack.base_url, c, seeds)
                    calls, jobs = calls_in(stack.worker_logs[offset:])
                    metric = mean_of(stack.worker_metrics()[0], before, "easel_batch_size")
                    speed[stack] = result.per_second
                    row += [result.per_second, percentile(result.latencies, 50),
                            jobs / calls if calls else float("nan")]
                    if stack is batched:
                        row.append("n/a" if metric is None else metric)
                    if result.errors:
                        row[-1] = f"{row[-1]} ({result.errors} errors)"
                b = min(c, MAX_BATCH)
                direct[b] = _direct(loaded, b, quick)
                if 1 not in direct:  # the reference of the unbatched arm
                    direct[1] = _direct(loaded, 1, quick)
                ratio = speed[batched] / direct[b]
                if c == GOAL_LEVEL:
                    ratio_at_goal = ratio
                service_rows.append(row)
                ratio_rows.append([c, b, direct[b], ratio, speed[unbatched] / direct[1],
                                   speed[batched] / speed[unbatched]])
    report = Report(f"batching: service images/s, max batch {MAX_BATCH} vs 1, / direct pipeline")
    report.lines += table(["conc", "reqs", "batched img/s", "p50 s", "batch(log)",
                           "batch(metric)", "unbatched img/s", "p50 s", "batch(log)"],
                          service_rows)
    report.lines += table(["conc", "direct batch", "direct img/s", "batched/direct",
                           "unbatched/direct(1)", "batched/unbatched"], ratio_rows)
    report.goals.append(Goal(f"batched / direct at concurrency {GOAL_LEVEL}", ratio_at_goal,
                             f">= {GOAL}", ratio_at_goal >= GOAL))
    report.notes.append("batch(log) = jobs per pipeline call from the worker's log lines; "
                        "batch(metric) = mean of the worker's easel_batch_size histogram")
    report.notes.append(cpu.summary())
    return report


if __name__ == "__main__":
    main(run, __doc__)
