"""`easel up`: Redis (private, AOF on, unless one is configured), the gateway and N workers.

A supervisor loop restarts any worker or gateway process that dies; Ctrl-C or SIGTERM stops the
workers first (they finish their current job), then the gateway, then Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.catalog import load_catalog


@dataclass
class StackOptions:
    port: int = 8000
    host: str = "127.0.0.1"
    workers: int = 1
    threads: int = 0
    data_dir: str = ".easel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it (Debian: apt-get install "
                         "redis-server) or set EASEL_REDIS_URL to an existing Redis")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    # AOF on and noeviction: queued jobs survive a restart and are never silently dropped.
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data_dir), "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", "",
                             "--maxmemory-policy", "noeviction"],
                            stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.o = options
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _env(self, redis_url: str, data: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("EASEL_STORAGE_DIR", str(data / "files"))
        env.update(EASEL_REDIS_URL=redis_url, EASEL_PORT=str(self.o.port),
                   EASEL_HOST=self.o.host, HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
                   OMP_WAIT_POLICY=env.get("OMP_WAIT_POLICY", "PASSIVE"))
        if not env.get("EASEL_API_KEYS"):
            env.setdefault("EASEL_AUTH", "off")  # a local stack; keys are opt-in here
        threads = self.o.threads or max(1, (os.cpu_count() or 1) // max(1, self.o.workers))
        env.setdefault("EASEL_THREADS", str(threads))
        return env

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        command = "serve" if name == "gateway" else "worker"
        child_env = dict(env, EASEL_NAME=f"easel-up-{name}-{os.getpid()}") if command == "worker" \
            else env
        if command == "worker":  # one metrics port per worker: 9100, 9101, ... (0 keeps all off)
            base = int(env.get("EASEL_METRICS_PORT") or 9100)
            child_env["EASEL_METRICS_PORT"] = str(base + int(name.rsplit("-", 1)[1]) if base else 0)
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "cli", command], env=child_env)

    def _describe(self) -> None:
        path = os.environ.get("EASEL_MODELS_FILE")
        catalog = load_catalog(Path(path) if path else None)
        for model in catalog.models.values():
            spec = catalog.pipeline_of(model)
            print(f"easel: model {model.id!r} ({model.family.name} rules) -> pipeline "
                  f"{spec.name!r} from {spec.path}: {model.description}", flush=True)

    def _wait_ready(self, timeout: float = 120) -> bool:
        url = f"http://{self.o.host}:{self.o.port}/readyz"
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            if any(p.poll() is not None for p in self.procs.values()):
                return False
            time.sleep(0.25)
        return False

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        data = Path(self.o.data_dir).resolve()
        redis_url = os.environ.get("EASEL_REDIS_URL", "")
        if not redis_url:
            self.redis, redis_url = start_redis(data / "redis")
            print(f"easel: started private Redis (AOF) at {redis_url}", flush=True)
        env = self._env(redis_url, data)
        self._describe()
        print(f"easel: API keys {'required' if env.get('EASEL_AUTH') != 'off' else 'off'} "
              f"(set EASEL_API_KEYS to name:sha256 entries from `easel hash-key` to require them)",
              flush=True)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        t0 = time.time()
        self._spawn("gateway", env)
        for i in range(self.o.workers):
            self._spawn(f"worker-{i}", env)
        if self._wait_ready():
            base = f"http://{self.o.host}:{self.o.port}"
            print(f"easel: ready in {time.time() - t0:.1f}s at {base}/v1 "
                  f"({self.o.workers} worker(s), {env['EASEL_THREADS']} thread(s) each)\n"
                  f"  curl -s {base}/v1/images/generations -H 'Content-Type: application/json' "
                  f"-d '{{\"model\":\"dall-e-2\",\"prompt\":\"a red circle to the left of a blue "
                  f"square\",\"size\":\"256x256\",\"response_format\":\"url\"}}'\n"
                  f"  playground: {base}/", flush=True)
        self._supervise(env)

    def _supervise(self, env: dict[str, str]) -> None:
        try:
            while not self.stopping:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is not None and not self.stopping:
                        print(f"easel: {name} exited with {proc.returncode}; restarting",
                              flush=True)
                        time.sleep(1)
                        self._spawn(name, env)
                time.sleep(0.5)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        order = [n for n in self.procs if n != "gateway"] + ["gateway"]
        for name in order:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        for name in order:
            try:
                self.procs[name].wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(timeout=30)
