"""Scale-out: images/s with two one-thread workers vs one one-thread worker on the same
gateway setup, at a concurrency that keeps both busy (8), batching off to isolate scale-out
from batching.  Goal: >= 1.7x.

Both services run side by side and the arms alternate in rounds, so drifting background load
(a training job, other sessions) hits both; the CPU the rest of the machine took during the
window is printed with the result, since on two cores every stolen core-second shows.
"""

from __future__ import annotations

from benchmarks.common import SEED0, Stack, closed_loop, delta, running
from benchmarks.report import CpuMeter, Goal, Report, main, percentile, table

CONCURRENCY, GOAL = 8, 1.7
OFF = {"EASEL_MAX_BATCH_IMAGES": "1"}


def run(quick: bool = False) -> Report:
    rounds, per_round = (1, 16) if quick else (3, 16)
    one, two = Stack(workers=1, env=OFF), Stack(workers=2, env=OFF)
    seconds = {one: 0.0, two: 0.0}
    latencies: dict[Stack, list[float]] = {one: [], two: []}
    errors = 0
    cpus: dict[Stack, list[CpuMeter]] = {one: [], two: []}
    with running(one, two):
        for stack in (one, two):  # warm-up: every worker's first call
            closed_loop(stack.base_url, stack.n_workers, [SEED0] * 2 * stack.n_workers)
        before = two.worker_metrics()
        for r in range(rounds):
            seeds = list(range(SEED0 + r * per_round, SEED0 + (r + 1) * per_round))
            for stack in (one, two):
                with CpuMeter() as cpu:
                    result = closed_loop(stack.base_url, CONCURRENCY, seeds)
                cpus[stack].append(cpu)
                seconds[stack] += result.seconds
                latencies[stack] += result.latencies
                errors += result.errors
        after = two.worker_metrics()
    speed = {s: len(latencies[s]) / seconds[s] for s in (one, two)}
    ratio = speed[two] / speed[one]
    rows = []
    for stack, name in ((one, "1 worker x 1 thread"), (two, "2 workers x 1 thread")):
        c = cpus[stack]
        rows.append([name, len(latencies[stack]), speed[stack],
                     percentile(latencies[stack], 50), sum(m.our_cores for m in c) / len(c),
                     sum(m.other_cores for m in c) / len(c), max(m.load1 for m in c)])
    split = [int(delta(a, b, "easel_jobs_total")) for a, b in zip(after, before, strict=True)]
    report = Report(f"scale-out: 2 workers vs 1, concurrency {CONCURRENCY}, batching off")
    report.lines += table(["arm", "images", "img/s", "p50 s", "our cores", "other cores",
                           "load1 max"], rows)
    report.lines.append(f"  ratio 2 workers / 1 worker: {ratio:.3f}; jobs per worker in the "
                        f"2-worker arm: {split}")
    report.goals.append(Goal("2 workers / 1 worker", ratio, f">= {GOAL}", ratio >= GOAL))
    report.notes.append("our cores = CPU of this benchmark's processes (client, gateway, Redis, "
                        "workers); other cores = everything else on the machine")
    got = sum(m.our_cores for m in cpus[two]) / len(cpus[two])
    if got < 1.5:
        report.notes.append(f"the 2-worker arm's processes got {got:.2f} cores in all: two "
                            "one-thread workers cannot run at once, so this run cannot show "
                            "scale-out (see 'busiest other processes' and autogroup)")
    if errors:
        report.notes.append(f"{errors} request(s) failed")
    return report


if __name__ == "__main__":
    main(run, __doc__)
