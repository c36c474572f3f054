"""`easel serve` with EASEL_GATEWAY_PROCESSES=2: two gateways on one port, one gateway to a
client and to a scraper (metrics summed), restarted when one dies, gone when the supervisor is."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from core import liveness
from tests.support import ROOT, RedisServer, base_env, free_port, stop, wait_port

QUEUE = "easel:shapes"


def _children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children()


def _until(check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _sample(base_url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    server = RedisServer(tmp_path / "redis").start()
    redis = Redis.from_url(server.url)
    beating = threading.Event()

    def beat() -> None:  # a worker that never takes a job: requests wait for their timeout
        while not beating.is_set():
            liveness.beat(redis, "test-fake-worker", [QUEUE], 15)
            beating.wait(2)

    threading.Thread(target=beat, daemon=True).start()
    port = free_port()
    env = base_env(server.url, tmp_path, EASEL_GATEWAY_PROCESSES="2", EASEL_PORT=str(port),
                   EASEL_REQUEST_TIMEOUT_SECONDS="20")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve"], cwd=ROOT, env=env)
    wait_port(port, proc=proc)
    _until(lambda: len(_children(proc)) == 2 and all(  # both listening on the port
        any(c.status == "LISTEN" and c.laddr.port == port for c in child.net_connections())
        for child in _children(proc)))
    yield proc, f"http://127.0.0.1:{port}"
    stop(proc)
    beating.set()
    server.stop()


def test_both_processes_serve_and_a_scrape_of_either_counts_both(
        gateway: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, base = gateway
    clients = [httpx.Client(base_url=base) for _ in range(24)]  # 24 connections, kept open
    for client in clients:
        assert client.get("/healthz").status_code == 200
    serving = [len([c for c in child.net_connections() if c.status == "ESTABLISHED"])
               for child in _children(proc)]
    assert all(n > 0 for n in serving), serving  # the kernel spread the connections
    for _ in range(5):  # whichever process answers the scrape, it reports all 24
        assert _sample(base, "easel_requests_total", endpoint="/healthz") == 24
    assert _sample(base, "easel_build_info") == 1  # one build line, not one per process
    for client in clients:
        client.close()


def test_waiting_requests_are_summed_and_a_dead_process_is_replaced(
        gateway: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, base = gateway
    body = {"model": "easel-shapes", "prompt": "a red circle", "size": "64x64"}
    holders = [subprocess.Popen([sys.executable, "-c", (
        "import httpx, sys; httpx.post(sys.argv[1] + '/v1/images/generations', "
        "json=eval(sys.argv[2]), timeout=30)"), base, repr(body)]) for _ in range(6)]
    port = int(base.rsplit(":", 1)[1])
    try:
        _until(lambda: _sample(base, "easel_requests_waiting") == 6)
        held = {child: len([c for c in child.net_connections() if c.status == "ESTABLISHED"
                            and c.laddr.port == port]) for child in _children(proc)}
        victim = max(held, key=lambda child: held[child])  # holds at least 3 of the 6
        victim.send_signal(signal.SIGKILL)  # its waits end with it, and leave the sum
        _until(lambda: victim.pid not in [c.pid for c in _children(proc)]
               and len(_children(proc)) == 2)
        _until(lambda: _sample(base, "easel_requests_waiting") == 6 - held[victim])
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        for holder in holders:
            holder.kill()


def test_the_processes_die_with_their_supervisor(
        gateway: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, _ = gateway
    children = _children(proc)
    proc.send_signal(signal.SIGKILL)  # no goodbye: the kernel tells the children
    proc.wait()
    _until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                           for c in children), timeout=10)


def test_sigterm_stops_them_all_cleanly(gateway: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, _ = gateway
    children = _children(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
