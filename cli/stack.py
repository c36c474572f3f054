"""`easel up`: Redis (private, AOF on, unless one is configured), the gateway and N workers
(and `easel webhooks` when EASEL_WEBHOOK_URLS names endpoints).

A supervisor loop restarts any worker or gateway process that dies; Ctrl-C or SIGTERM stops the
workers first (they finish their current job), then the gateway, then Redis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.certs import signing_env
from cli.private_redis import private_dir, redacted, start_redis
from core.catalog import Catalog, load_catalog
from core.logs import setup_logging
from service.hosts import is_loopback

log = logging.getLogger("easel.supervisor")
RESTART_STABLE = 30.0  # seconds: a process that ran this long crashed, it is not crash-looping
RESTART_BACKOFF_MAX = 10.0


@dataclass
class StackOptions:
    port: int = 8000
    host: str = "127.0.0.1"
    workers: int = 1
    threads: int = 0
    data_dir: str = ".easel"
    insecure_no_auth: bool = False  # allow auth off on a non-loopback --host


def log_json() -> bool:
    return os.environ.get("EASEL_LOG_JSON", "").strip().lower() in ("1", "true", "yes", "on")


def say(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """A supervisor line: `easel: ...` on stdout, or with EASEL_LOG_JSON one JSON line in the
    schema every Easel process writes (core.logs)."""
    if log_json():
        log.log(level, message, extra=fields)
    else:
        print(f"easel: {message}", flush=True)


def example_curl(base: str, catalog: Catalog) -> str:
    """A generation request the catalog's default model accepts (its family's own rules)."""
    model = catalog.default_model()
    rules = catalog.rules_of(model)
    size = "256x256" if "256x256" in rules.sizes else rules.default_size
    body = {"model": model.id, "prompt": "a red circle to the left of a blue square",
            "size": size, "response_format": rules.default_response_format}
    return (f"curl -s {base}/v1/images/generations -H 'Content-Type: application/json' "
            f"-d '{json.dumps(body, separators=(',', ':'))}'")


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.o = options
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}  # monotonic time of each process's last start
        self.redis: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _env(self, redis_url: str, data: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("EASEL_STORAGE_DIR", str(data / "files"))
        env.update(EASEL_REDIS_URL=redis_url, EASEL_PORT=str(self.o.port),
                   EASEL_HOST=self.o.host, HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"))
        if not env.get("EASEL_API_KEYS"):
            env.setdefault("EASEL_AUTH", "off")  # a local stack; keys are opt-in here
        if env.get("EASEL_AUTH") == "off" and not is_loopback(self.o.host):
            # Keys are opt-in only for a stack nobody else can reach.
            forced = env.get("EASEL_ALLOW_NO_AUTH_PUBLIC", "").lower() in ("1", "true", "yes")
            if not (self.o.insecure_no_auth or forced):
                raise SystemExit(f"easel: refusing to serve {self.o.host} with API keys off: set "
                                 "EASEL_API_KEYS (easel hash-key KEY), use --host 127.0.0.1, or "
                                 "pass --insecure-no-auth")
            env["EASEL_ALLOW_NO_AUTH_PUBLIC"] = "1"
        threads = self.o.threads or max(1, (os.cpu_count() or 1) // max(1, self.o.workers))
        env.setdefault("EASEL_THREADS", str(threads))
        if self.o.workers * int(env["EASEL_THREADS"]) > (os.cpu_count() or 1):
            # OpenMP threads spin a moment between parallel regions (libgomp's default), which
            # renders the default model 2x faster than sleeping ones; but with more threads
            # than cores the spinning ones starve each other (10-30x slower): sleep then.
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Every worker serves every pipeline: the gateway's easel_workers_expected (and alert).
        env.setdefault("EASEL_EXPECTED_WORKERS", str(self.o.workers))
        return env

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        command = {"gateway": "serve", "webhooks": "webhooks"}.get(name, "worker")
        # Each worker process start adds a suffix of its own to this name (core.liveness).
        child_env = dict(env, EASEL_NAME=f"easel-up-{name}") if command == "worker" else env
        if command == "worker":  # one metrics port per worker: 9100, 9101, ... (0 keeps all off)
            base = int(env.get("EASEL_METRICS_PORT") or 9100)
            child_env["EASEL_METRICS_PORT"] = str(base + int(name.rsplit("-", 1)[1]) if base else 0)
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "cli", command], env=child_env)
        self.started[name] = time.monotonic()

    def _describe(self, catalog: Catalog) -> None:
        for model in catalog.models.values():
            spec = catalog.pipeline_of(model)
            say(f"model {model.id!r} ({model.family.name} rules) -> pipeline {spec.name!r} "
                f"from {spec.path}: {model.description}", model=model.id, pipeline=spec.name)

    def _wait_ready(self, timeout: float = 120) -> dict[str, Any] | None:
        """The /readyz answer once every pipeline is served or has failed to load; None when
        that does not happen in time or a process died."""
        url = f"http://{self.o.host}:{self.o.port}/readyz"
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    answer: dict[str, Any] = json.loads(r.read())
                    return answer
            except urllib.error.HTTPError as exc:  # 503: still waiting
                with contextlib.suppress(ValueError):
                    body = json.loads(exc.read())
                    if body.get("status") == "failed":  # nothing loaded: no use waiting
                        return dict(body)
            except (OSError, ValueError):
                pass
            if any(p.poll() is not None for p in self.procs.values()):
                return None
            time.sleep(0.25)
        return None

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        if log_json():
            setup_logging(True, component="supervisor")
        data = private_dir(Path(self.o.data_dir).resolve())  # AOF, password, local images
        path = os.environ.get("EASEL_MODELS_FILE")
        # Checked before anything starts: a catalog mistake is one clear message, no process.
        catalog = load_catalog(Path(path) if path else None).with_default(
            os.environ.get("EASEL_DEFAULT_MODEL", ""))
        redis_url = os.environ.get("EASEL_REDIS_URL", "")
        if not redis_url:
            self.redis, redis_url = start_redis(data / "redis")
            say(f"started private Redis (AOF, password in {data / 'redis' / 'password'}) at "
                f"{redacted(redis_url)}", service="redis")
        try:  # every way out, a failed start included, stops what was started
            self._start(catalog, redis_url, data)
        finally:
            self._shutdown()

    def _start(self, catalog: Catalog, redis_url: str, data: Path) -> None:
        env = self._env(redis_url, data)
        root = signing_env(env, data)  # C2PA: the operator's chain, or a local one (made once)
        say(f"signing images with the C2PA chain {env.get('EASEL_C2PA_CERT_CHAIN')}" +
            (f"; verifiers trust the root {root} (easel verify FILE)" if root else ""))
        self._describe(catalog)
        say(f"API keys {'required' if env.get('EASEL_AUTH') != 'off' else 'off'} (set "
            "EASEL_API_KEYS to name:sha256 entries from `easel hash-key` to require them)")
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        t0 = time.time()
        self._spawn("gateway", env)
        if env.get("EASEL_WEBHOOK_URLS", "").strip():  # docs/async.md: it signs and posts them
            self._spawn("webhooks", env)
        for i in range(self.o.workers):
            self._spawn(f"worker-{i}", env)
        readiness = self._wait_ready()
        for pipeline, message in (readiness or {}).get("failed", {}).items():
            say(message, logging.ERROR,  # "pipeline NAME failed to load: why"
                pipeline=pipeline)
        for pipeline, adapters in (readiness or {}).get("failed_adapters", {}).items():
            for message in adapters.values():  # "adapter A for pipeline P failed to load: why"
                say(message, logging.ERROR, pipeline=pipeline)
        if readiness is not None and readiness.get("status") == "failed":
            say("no pipeline loaded: nothing to serve until the catalog or its checkpoints are "
                "fixed (docs/models.md); then restart", logging.ERROR)
        elif readiness is not None:
            base = f"http://{self.o.host}:{self.o.port}"
            say(f"ready in {time.time() - t0:.1f}s at {base}/v1 "
                f"({self.o.workers} worker(s), {env['EASEL_THREADS']} thread(s) each)\n"
                f"  {example_curl(base, catalog)}\n"
                f"  playground: {base}/", seconds=round(time.time() - t0, 3))
        self._supervise(env)

    def _supervise(self, env: dict[str, str]) -> None:
        """Restart what dies: at once after a crash of a process that ran a while, backing
        off (up to RESTART_BACKOFF_MAX) while one keeps dying right after its start."""
        delay = {name: 0.0 for name in self.procs}
        due: dict[str, float] = {}  # when each dead process is started again
        while not self.stopping:
            now = time.monotonic()
            for name, proc in list(self.procs.items()):
                if proc.poll() is None or self.stopping:
                    continue
                if name not in due:  # just found dead (one backing off never holds up others)
                    ran = now - self.started[name]
                    delay[name] = 0.0 if ran > RESTART_STABLE else \
                        min(RESTART_BACKOFF_MAX, max(0.5, 2 * delay[name]))
                    due[name] = now + delay[name]
                    say(f"{name} exited with {proc.returncode} after {ran:.0f}s; restarting "
                        f"in {delay[name]:.1f}s", logging.WARNING, service=name,
                        exit_code=proc.returncode, seconds=round(ran, 3),
                        restart_in=delay[name])
                if now >= due[name]:
                    del due[name]
                    self._spawn(name, env)
            time.sleep(0.2)

    def _shutdown(self) -> None:
        order = sorted(self.procs, key=lambda n: n == "gateway")  # the gateway last
        for name in order:
            if self.procs[name].poll() is None:
                self.procs[name].send_signal(signal.SIGTERM)
        for name in order:
            try:
                self.procs[name].wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=30)
