"""Shared machinery: private Redis + gateway + workers, the direct pipeline and closed-loop
load through the service (reporting lives in benchmarks.report).

Every benchmark compares two arms measured in the same run on the same machine, because these
machines are noisy (a background training job, other sessions' tests): only ratios travel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from core import liveness
from tests.support import ROOT, RedisServer, base_env, free_port, stop, wait_port, wait_ready

# Identical work in every arm: one model, size, step count, guidance, prompt; seeds from SEED0.
MODEL, PIPELINE, QUEUE = "easel-shapes", "shapes", "easel:shapes"
SIZE, STEPS, GUIDANCE, SEED0 = 64, 10, 5.0, 1000
PROMPT = "a red circle above a blue square"


def body(seed: int, prompt: str = PROMPT) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, "n": 1, "size": f"{SIZE}x{SIZE}",
            "response_format": "b64_json", "seed": seed, "steps": STEPS,
            "guidance_scale": GUIDANCE}


# ---- processes ----------------------------------------------------------------------------

def raise_fd_limit(want: int = 8192) -> None:
    """Thousands of held requests need as many sockets in the client and in the gateway
    (which inherits this limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


class Stack:
    """A private Redis, one gateway and `workers` worker processes, stopped on exit.

    `fake_worker` heartbeats a worker that does not exist, so the gateway accepts jobs that no
    one takes (gateway-only load).  Process output goes to log files under a temporary folder:
    per-request log lines on a terminal would cost the processes more than the files do.
    """

    def __init__(self, workers: int = 1, env: dict[str, str] | None = None,
                 fake_worker: bool = False) -> None:
        self.n_workers = workers
        self.extra = env or {}
        self.fake_worker = fake_worker
        self.dir = Path(tempfile.mkdtemp(prefix="easel-bench-"))
        self.port = free_port()
        self.metrics_ports: list[int] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stop_beat = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "cli", command], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def start(self) -> Stack:
        """Spawn every process without waiting, so that several stacks load side by side."""
        raise_fd_limit()
        self.redis_server = RedisServer(self.dir / "redis").start()
        self.redis = Redis.from_url(self.redis_server.url)
        self.env = base_env(self.redis_server.url, self.dir, **self.extra)
        for i in range(self.n_workers):
            port = free_port()
            self.metrics_ports.append(port)
            self._spawn(f"worker{i}", "worker", dict(
                self.env, EASEL_NAME=f"bench-worker-{i}", EASEL_METRICS_PORT=str(port)))
        self._spawn("gateway", "serve", dict(self.env, EASEL_PORT=str(self.port)))
        return self

    def ready(self) -> Stack:
        """Wait until the gateway answers /readyz and every worker heartbeats."""
        wait_port(self.port, proc=self.procs["gateway"])
        if self.fake_worker:
            threading.Thread(target=self._beat, daemon=True).start()
        self._wait_workers(max(1, self.n_workers))
        wait_ready(self.base_url)
        return self

    def __enter__(self) -> Stack:
        try:
            return self.start().ready()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _beat(self) -> None:
        # A 15 s TTL beaten every 3 s keeps the fake worker alive with margin.
        while not self._stop_beat.is_set():
            liveness.beat(self.redis, "bench-fake-worker", [QUEUE], 15)
            self._stop_beat.wait(3)

    def _wait_workers(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while liveness.live_count(self.redis, QUEUE) < n:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.log(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {liveness.live_count(self.redis, QUEUE)} of {n} live")
            time.sleep(0.2)

    def close(self) -> None:
        self._stop_beat.set()
        for proc in self.procs.values():
            stop(proc)
        if hasattr(self, "redis_server"):
            self.redis_server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def worker_logs(self) -> str:
        return "".join(self.log(f"worker{i}") for i in range(self.n_workers))

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def worker_metrics(self) -> list[dict[str, float]]:
        """Each worker's Prometheus samples (summed over labels), in worker order."""
        from prometheus_client.parser import text_string_to_metric_families

        out = []
        for port in self.metrics_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            samples: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    samples[s.name] = samples.get(s.name, 0.0) + float(s.value)
            out.append(samples)
        return out


class ProcessTree:
    """A process and its children, summed: the gateway is several processes behind one port
    when EASEL_GATEWAY_PROCESSES (or the core count) says so (cli/serve.py)."""

    def __init__(self, pid: int) -> None:
        import psutil

        root = psutil.Process(pid)
        self.procs = [root, *root.children(recursive=True)]

    def cpu_times(self) -> tuple[float, float]:
        times = [p.cpu_times() for p in self.procs]
        return sum(t.user for t in times), sum(t.system for t in times)

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.procs)


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def mean_of(after: dict[str, float], before: dict[str, float], histogram: str) -> float | None:
    """Mean of a Prometheus histogram's observations between two scrapes."""
    count = delta(after, before, f"{histogram}_count")
    return delta(after, before, f"{histogram}_sum") / count if count else None


@contextlib.contextmanager
def running(*stacks: Stack) -> Iterator[tuple[Stack, ...]]:
    """Several stacks at once, loading their models side by side; the arms of a benchmark
    then alternate between them, so drifting background load hits every arm alike."""
    try:
        for s in stacks:
            s.start()
        for s in stacks:
            s.ready()
        yield stacks
    finally:
        for s in stacks:
            s.close()


# ---- the direct pipeline -------------------------------------------------------------------

def load_direct() -> Any:
    """The embedded pipeline in this process, on one torch thread like a worker
    (EASEL_THREADS=1); the reference every service number is divided by."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as tests.support.base_env gives workers
    import torch
    import transformers
    from diffusers.utils import logging as diffusers_logging

    from core.catalog import load_catalog
    from models.loading import load_pipeline

    transformers.logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    torch.set_num_threads(1)
    return load_pipeline(load_catalog(None).pipelines[PIPELINE])


def direct_call(loaded: Any, seeds: list[int]) -> float:
    """Seconds for one pipeline call rendering `seeds` as one batch, as a worker calls it."""
    from models.rendering import generate_prompts

    t0 = time.perf_counter()
    generate_prompts(loaded, [PROMPT] * len(seeds), None, seeds, STEPS, GUIDANCE, SIZE, SIZE)
    return time.perf_counter() - t0


# ---- load through the service --------------------------------------------------------------

@dataclass
class Run:
    seconds: float  # wall time from the first request sent to the last answer
    latencies: list[float]
    errors: int

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


async def _closed_loop(base_url: str, concurrency: int, seeds: list[int]) -> Run:
    todo: Iterator[int] = iter(seeds)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:

        async def user() -> None:
            nonlocal errors
            for seed in todo:  # a shared iterator: each seed is sent exactly once
                t0 = time.perf_counter()
                r = await client.post("/v1/images/generations", json=body(seed))
                if r.status_code == 200 and r.json()["data"][0].get("b64_json"):
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return Run(time.perf_counter() - t0, latencies, errors)


def closed_loop(base_url: str, concurrency: int, seeds: list[int]) -> Run:
    """`concurrency` clients each sending its next request as soon as the last one answers."""
    return asyncio.run(_closed_loop(base_url, concurrency, seeds))
