"""Gateway: how fast it accepts (enqueues) requests, and what 1,000 waiting requests cost it.

No worker runs: a fake heartbeat makes the gateway accept jobs that nobody takes.  A job is
accepted once it is in Redis, so
- the accepted rate is the growth of the RQ queue (LLEN) over the steady part of a saturating
  open-loop run (at most `CAP` requests in flight; a 0.1 s request timeout ends them with 504);
- the enqueue latency is each job's `enqueued_at` (stamped by RQ inside the gateway) minus the
  moment the client sent it (same clock), measured at half the saturated rate, where the
  latency means something instead of being the length of the client's own backlog;
- then a second gateway (120 s timeout) holds 1,000 concurrent requests, and its RSS is read
  before, while holding (easel_requests_waiting at 1000) and after they hang up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import time
from typing import Any

import httpx
import psutil
from redis.asyncio import Redis as AsyncRedis
from rq.job import Job
from rq.serializers import JSONSerializer

from benchmarks.common import QUEUE, SEED0, ProcessTree, Stack, body
from benchmarks.lean_http import LeanClient
from benchmarks.report import Goal, Report, main, percentile, table

# The rate phase keeps at most CAP requests in flight and a short gateway timeout (0.1 s) frees
# each slot soon after its enqueue; the hold phase needs HOLD connections at once for minutes.
# Each slot is busy for the timeout at least, so the load tops out at CAP / 0.1 s: 256 slots
# leave room above 2,000 req/s (64, the earlier value, capped the rate itself near 600).
CAP, HOLD, RATE_TIMEOUT, HOLD_TIMEOUT = 256, 1000, 0.1, 120
# httpcore scans its whole pool for every request (quadratic with 1,000 connections: the client
# alone then tops out below 100 req/s), so the load is spread over clients of POOL connections.
POOL = 16
# httpx costs more CPU per request than the gateway it loads (benchmarks/lean_http.py): the lean
# client is the default, GATEWAY_BENCH_CLIENT=httpx measures with httpx as before.
HTTPX = os.environ.get("GATEWAY_BENCH_CLIENT", "lean") == "httpx"
_WAITING = re.compile(r"^easel_requests_waiting\s+([0-9.e+]+)$", re.M)


def _env(timeout: float) -> dict[str, str]:
    return {"EASEL_REQUEST_TIMEOUT_SECONDS": str(timeout), "EASEL_MAX_QUEUE_DEPTH": "1000000"}


class Clients(contextlib.AsyncExitStack):
    """`connections` kept-alive connections: a lean client (benchmarks/lean_http.py), or with
    GATEWAY_BENCH_CLIENT=httpx enough small-pool httpx clients (request i to client i % n)."""

    def __init__(self, stack: Stack, connections: int, timeout: float) -> None:
        super().__init__()
        self.lean = None if HTTPX else LeanClient("127.0.0.1", stack.port, connections, timeout)
        limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
        self.pool = [httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=timeout)
                     for _ in range(max(1, -(-connections // POOL)) if HTTPX else 0)]

    async def __aenter__(self) -> Clients:
        for c in self.pool:
            await self.enter_async_context(c)
        if self.lean is not None:
            await self.enter_async_context(self.lean)
        return self

    async def post(self, i: int, json: dict[str, Any], headers: dict[str, str]) -> int:
        if self.lean is not None:
            return await self.lean.post_json("/v1/images/generations", json, headers)
        r = await self.pool[i % len(self.pool)].post("/v1/images/generations", json=json,
                                                     headers=headers)
        return r.status_code


async def _fire(clients: Clients, i: int, sent: dict[str, float],
                statuses: collections.Counter[str]) -> None:
    rid = f"bench-{i}"
    sent[rid] = time.time()
    try:
        status = await clients.post(i, body(SEED0 + i), {"X-Request-Id": rid})
        statuses[str(status)] += 1
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        statuses[type(exc).__name__] += 1


async def _saturate(stack: Stack, seconds: float) -> tuple[float, dict[str, float]]:
    """Accepted requests/s (LLEN growth after a warm-up third) and CPU cores per process."""
    redis = AsyncRedis.from_url(stack.redis_server.url)
    samples: list[tuple[float, int]] = []
    statuses: collections.Counter[str] = collections.Counter()
    procs = {"gateway": ProcessTree(stack.pid("gateway")), "client": psutil.Process(),
             "redis": psutil.Process(stack.redis_server.proc.pid)}  # type: ignore[union-attr]
    gate = asyncio.Semaphore(CAP)
    async with Clients(stack, CAP, 60) as client:

        async def one(i: int) -> None:
            try:
                await _fire(client, i, {}, statuses)
            finally:
                gate.release()

        async def sample() -> None:
            while True:
                samples.append((time.monotonic(), await redis.llen(f"rq:queue:{QUEUE}")))
                await asyncio.sleep(0.1)

        start = time.monotonic()
        sampler = asyncio.create_task(sample())
        cpu0: dict[str, float] = {}
        tasks, i = [], 0
        while time.monotonic() - start < seconds:
            await gate.acquire()
            await asyncio.sleep(0)  # let sent requests progress: no burst of CAP at once
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            if not cpu0 and time.monotonic() - start > seconds / 3:
                cpu0 = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
                t_cpu = time.monotonic()
        cores = {k: (sum(p.cpu_times()[:2]) - cpu0[k]) / (time.monotonic() - t_cpu)
                 for k, p in procs.items()}
        sampler.cancel()
        await asyncio.gather(*tasks)
    await redis.aclose()
    steady = [s for s in samples if s[0] - start > seconds / 3]
    if len(steady) < 2 or steady[-1][1] == steady[0][1]:
        raise RuntimeError(f"the queue did not grow; answers: {dict(statuses)}")
    rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    return rate, cores


async def _paced(stack: Stack, rate: float, count: int) -> tuple[list[float], float, dict]:
    """Open loop at `rate` requests/s: per-request enqueue latency and the achieved rate."""
    sent: dict[str, float] = {}
    statuses: collections.Counter[str] = collections.Counter()
    stack.redis.delete(f"rq:queue:{QUEUE}")  # only this phase's jobs are read back
    async with Clients(stack, CAP, 60) as client:
        start = time.monotonic()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(_fire(client, 100_000 + i, sent, statuses)))
        achieved = count / (time.monotonic() - start)
        await asyncio.gather(*tasks)
    ids = [i.decode() for i in stack.redis.lrange(f"rq:queue:{QUEUE}", 0, -1)]  # type: ignore[union-attr]
    latencies = []
    for job in Job.fetch_many(ids, connection=stack.redis, serializer=JSONSerializer):
        if job is not None and job.enqueued_at is not None:
            rid = job.args[0].get("request_id")
            if rid in sent:
                latencies.append(job.enqueued_at.timestamp() - sent[rid])
    return latencies, achieved, dict(statuses)


async def _hold(stack: Stack, count: int, cycles: int) -> dict[str, float]:
    """Gateway RSS before, while holding `count` waiting requests, and after they hang up;
    `cycles` > 1 repeats the hold, so that memory that keeps growing would show as a leak."""
    gateway = ProcessTree(stack.pid("gateway"))
    statuses: collections.Counter[str] = collections.Counter()
    out: dict[str, float] = {"held": 0.0, "rss_held": 0.0}

    async def waiting(probe: httpx.AsyncClient) -> float:
        found = _WAITING.search((await probe.get("/metrics")).text)
        return float(found.group(1)) if found else -1.0

    async with Clients(stack, 32, 0.5) as warm:  # warm code paths; they hang up at 0.5 s
        await asyncio.gather(*(_fire(warm, i, {}, statuses) for i in range(20)))
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as probe:
        while await waiting(probe) > 0:
            await asyncio.sleep(0.1)
        out["rss_before"] = gateway.rss()
        for cycle in range(cycles):
            t0, queued0, held = time.monotonic(), stack.redis.llen(f"rq:queue:{QUEUE}"), 0.0
            async with Clients(stack, count, 300) as client:
                tasks = [asyncio.create_task(_fire(client, 200_000 + cycle * count + i, {},
                                                   statuses)) for i in range(count)]
                while time.monotonic() - t0 < 90 and held < count:
                    held = max(held, await waiting(probe))
                    out["rss_held"] = max(out["rss_held"], gateway.rss())
                    await asyncio.sleep(0.25)
                if cycle == 0:
                    out["seconds_to_hold"] = time.monotonic() - t0
                    out["held"] = held
                    out["queued"] = stack.redis.llen(f"rq:queue:{QUEUE}") - queued0
                for t in tasks:
                    t.cancel()  # the clients hang up; the gateway drops their waits
                await asyncio.gather(*tasks, return_exceptions=True)
            while await waiting(probe) > 0 and time.monotonic() - t0 < 150:
                await asyncio.sleep(0.25)
            await asyncio.sleep(1)
            out[f"rss_after_{cycle + 1}"] = gateway.rss()
    return out


def run(quick: bool = False) -> Report:
    seconds, paced_count, cycles = (4.0, 200, 1) if quick else (12.0, 1000, 3)
    with Stack(workers=0, env=_env(RATE_TIMEOUT), fake_worker=True) as stack:
        processes = max(1, len(ProcessTree(stack.pid("gateway")).procs) - 1)  # less a supervisor
        load0 = os.getloadavg()[0]
        rate, cores = asyncio.run(_saturate(stack, seconds))
        load1 = os.getloadavg()[0]
        latencies, achieved, statuses = asyncio.run(_paced(stack, rate / 2, paced_count))
    with Stack(workers=0, env=_env(HOLD_TIMEOUT), fake_worker=True) as stack:
        held = asyncio.run(_hold(stack, HOLD, cycles))
    mib = 1024 * 1024
    report = Report("gateway: enqueue rate and latency (no worker), 1,000 held requests")
    ms = {k: v / rate * 1000 for k, v in cores.items()}  # CPU ms per accepted request
    # What the machine's cores would accept if these three processes had them all: the
    # figure that travels from a shared machine, where the rate itself is a lower bound.
    capacity = (os.cpu_count() or 1) * 1000 / sum(ms.values())
    report.lines += table(["saturated accepted req/s", "gateway cores", "client cores",
                           "redis cores"],
                          [[rate, cores["gateway"], cores["client"], cores["redis"]]])
    report.lines += table(["gateway CPU ms/req", "client CPU ms/req", "redis CPU ms/req",
                           f"req/s on {os.cpu_count()} idle cores"],
                          [[ms["gateway"], ms["client"], ms["redis"], capacity]])
    if latencies:
        report.lines += table(["paced req/s", "enqueued", "p50 ms", "p99 ms", "max ms"],
                              [[achieved, len(latencies), percentile(latencies, 50) * 1000,
                                percentile(latencies, 99) * 1000, max(latencies) * 1000]])
    after = [f"{held[f'rss_after_{c + 1}'] / mib:.1f}" for c in range(cycles)]
    report.lines += table(["held", "queued", "s to hold", "RSS before MiB", "RSS held MiB",
                           "KiB/request", "RSS after each hold MiB"],
                          [[int(held["held"]), int(held["queued"]), held["seconds_to_hold"],
                            held["rss_before"] / mib, held["rss_held"] / mib,
                            (held["rss_held"] - held["rss_before"]) / 1024 / HOLD,
                            " / ".join(after)]])
    report.goals.append(Goal("saturated accepted req/s", rate, ">= 1000", rate >= 1000))
    report.goals.append(Goal("requests held of 1000", held["held"], ">= 1000",
                             held["held"] >= HOLD))
    report.notes.append(f"{processes} gateway process(es) (EASEL_GATEWAY_PROCESSES), "
                        f"{'httpx' if HTTPX else 'lean'} client; load average (1 min) "
                        f"{load0:.2f} before the rate phase, {load1:.2f} after")
    report.notes.append(f"paced-phase answers (all should be 504 after the {RATE_TIMEOUT} s "
                        f"timeout): {statuses}")
    report.notes.append("client, gateway and Redis share the machine's cores: the saturated "
                        "rate is a lower bound set by whichever of them runs out of CPU first")
    return report


if __name__ == "__main__":
    main(run, __doc__)
