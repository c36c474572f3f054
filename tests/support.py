"""Real processes for tests: a private Redis, SeaweedFS (S3), Easel gateway and workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def wait_port_closed(port: int, timeout: float = 30) -> None:
    """Until nothing listens on `port`: a killed gateway's processes are gone, so a new one's
    readiness is not read from an old listener that is still closing."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} is still open")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class RedisServer:
    dir: Path
    appendonly: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required (make test installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop(self.proc, sig)


@dataclass
class SeaweedS3:
    dir: Path
    access_key: str = "easel-test"
    secret_key: str = "easel-test-secret"
    # The key's rights; docker-compose.yml's identity is narrower (tests/deploy/test_compose_s3.py).
    actions: list[str] = field(default_factory=lambda: ["Admin", "Read", "Write", "List",
                                                        "Tagging"])
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # Internal ports (master, volume, filer, grpc), chosen on the first start and kept, so that
    # stop() then start() brings the same server back on the same directory (chaos run).
    ports: dict[str, int] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)  # more `weed server` flags

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / "weed.log"

    def start(self) -> SeaweedS3:
        """Start and wait until the S3 endpoint answers HTTP. The first start picks its ports
        from free_port(), so a parallel test can take one before weed binds it: weed then exits,
        and the start is tried again on fresh ports; a restart keeps its ports (chaos runs)."""
        tries = 1 if self.ports else 3
        for attempt in range(tries):
            if attempt:
                self.port, self.ports = free_port(), {}
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> SeaweedS3:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "easel", "credentials": [{"accessKey": self.access_key,
                                              "secretKey": self.secret_key}],
            "actions": self.actions}]}))
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not self.ports:
            self.ports = {k: free_port() for k in ("master", "mgrpc", "volume", "vgrpc", "filer",
                                                   "fgrpc", "s3grpc")}
        ports = self.ports
        with self.log.open("ab") as log:  # kept: a failed start says why (tail())
            self.proc = subprocess.Popen(
                [weed, "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.dir}",
                 f"-master.port={ports['master']}", f"-master.port.grpc={ports['mgrpc']}",
                 f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['vgrpc']}",
                 f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['fgrpc']}",
                 f"-s3.port={self.port}", f"-s3.port.grpc={ports['s3grpc']}",
                 f"-s3.config={config}", "-master.volumeSizeLimitMB=64", "-volume.max=8",
                 # Off: they default to fixed ports (8181, 9101) that parallel servers would share.
                 "-s3.port.iceberg=0", "-s3.port.lance=0", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout=60, proc=self.proc)
            wait_until(self._answers, timeout=60, what="SeaweedFS's S3 endpoint to answer")
        except (TimeoutError, RuntimeError, AssertionError) as e:
            stop(self.proc, timeout=3)
            raise RuntimeError(f"SeaweedFS did not start: {e}\n{self.tail()}") from e
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"weed exited with {self.proc.returncode}")
        try:
            urllib.request.urlopen(self.endpoint, timeout=2).close()
        except urllib.error.HTTPError:
            return True  # an S3 error document (unsigned request): the gateway serves
        except OSError:
            return False
        return True

    def tail(self, lines: int = 30) -> str:
        """The end of weed's own log, for a failure message."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def env(self, bucket: str) -> dict[str, str]:
        return {"EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": bucket,
                "EASEL_S3_ENDPOINT_URL": self.endpoint, "EASEL_S3_ACCESS_KEY_ID": self.access_key,
                "EASEL_S3_SECRET_ACCESS_KEY": self.secret_key}

    def stop(self) -> None:
        # SeaweedFS takes ~17 s to exit on SIGTERM; its data is flushed well before that.
        stop(self.proc, timeout=3)


def base_env(redis_url: str, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASEL_")}
    env.update(EASEL_REDIS_URL=redis_url, EASEL_STORAGE_DIR=str(data / "files"),
               EASEL_THREADS="1", EASEL_AUTH="off", EASEL_METRICS_PORT="0", HF_HUB_OFFLINE="1",
               # The output classifier can flag a noisy few-step plumbing render; the tests that
               # are about it turn it on themselves.
               EASEL_OUTPUT_CLASSIFIER="off",
               # Float32 on every CPU: tests compare batched and solo pixels (docs/api.md's
               # batching tolerance), and bfloat16 autocast, on only where the CPU has it, moves
               # edges between the two; tests/models/test_loading.py covers that path.
               EASEL_CPU_AUTOCAST="false",
               OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


@dataclass
class Gateway:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log: Path | None = None  # where its stderr goes (inherited when None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gateway:
        stderr = self.log.open("ab") if self.log is not None else None
        self.proc = subprocess.Popen([sys.executable, "-m", "cli", "serve"], cwd=ROOT,
                                     env=dict(self.env, EASEL_PORT=str(self.port)),
                                     stderr=stderr)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        stop(self.proc)


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", "worker"], cwd=ROOT,
                            env=dict(env, EASEL_NAME=name))


def start_webhooks(env: dict[str, str], name: str = "test-webhooks") -> subprocess.Popen:
    """`easel webhooks`: signs and posts webhook deliveries (env needs EASEL_WEBHOOK_SECRET)."""
    return subprocess.Popen([sys.executable, "-m", "cli", "webhooks"], cwd=ROOT,
                            env=dict(env, EASEL_NAME=name))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """`check()`'s first truthy answer, polled every 0.1 s; AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ready(base_url: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} not ready")
