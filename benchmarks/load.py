"""Sustained load: N concurrent clients for T seconds against gateway + Redis + 2 workers.

    python -m benchmarks.load                 # 200 clients, 60 s (the reliability figures)
    python -m benchmarks.load --clients 50 --seconds 15

Each client loops: send a generation, wait for its image, repeat.  Reports completed requests,
errors by status (429 counts as shed load, not a failure), p50/p99 latency, images/s and the
gateway's memory before and after.  Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter

import httpx

from benchmarks.common import ProcessTree, Stack, body


async def _client(url: str, deadline: float, seed: int, latencies: list[float],
                  statuses: Counter[int], http: httpx.AsyncClient) -> None:
    i = 0
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            r = await http.post(url, json=body(seed * 10_000 + i), timeout=300)
            statuses[r.status_code] += 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            elif r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        except httpx.HTTPError as exc:
            statuses[-1] += 1  # transport error: counted, never hidden
            print(f"transport error: {exc!r}")
        i += 1


async def _run(base_url: str, clients: int, seconds: float) -> tuple[list[float], Counter[int]]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(limits=limits) as http:
        await asyncio.gather(*(_client(f"{base_url}/v1/images/generations", deadline, c,
                                       latencies, statuses, http) for c in range(clients)))
    return latencies, statuses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    env = {"EASEL_MAX_QUEUE_DEPTH": str(args.clients * 2)}
    with Stack(workers=args.workers, env=env) as stack:
        gateway = ProcessTree(stack.pid("gateway"))  # all its processes
        rss_before = gateway.rss()
        t0 = time.perf_counter()
        latencies, statuses = asyncio.run(_run(stack.base_url, args.clients, args.seconds))
        wall = time.perf_counter() - t0
        rss_after = gateway.rss()
    ok = len(latencies)
    errors = {code: n for code, n in statuses.items() if code not in (200, 429)}
    q = statistics.quantiles(latencies, n=100) if ok >= 2 else [float("nan")] * 99
    print(f"load: {args.clients} clients x {args.seconds:.0f} s, {args.workers} workers "
          f"(1 thread each), 64x64, 10 steps, batching on")
    print(f"  completed {ok} images in {wall:.1f} s = {ok / wall:.2f} images/s")
    print(f"  statuses {dict(sorted(statuses.items()))}; errors (not 200/429): {errors or 'none'}")
    print(f"  latency p50 {q[49]:.2f} s, p99 {q[98]:.2f} s (queueing included: "
          f"{args.clients} clients share {args.workers} workers)")
    print(f"  gateway RSS {rss_before / 2**20:.1f} MB before, {rss_after / 2**20:.1f} MB after")


if __name__ == "__main__":
    main()
