"""`easel serve`: the gateway, as one process or as EASEL_GATEWAY_PROCESSES processes that share
its port (SO_REUSEPORT: the kernel spreads connections over them), for more than one core.

With several, this process only supervises.  It holds the port (bound, never listening, so no
other program takes it between restarts), starts `easel serve --process I` children, restarts
one that dies, and passes SIGTERM and SIGINT on.  The children share what requests need
through Redis, as gateways on separate hosts do; the first one alone runs the gateway's
housekeeping and background work (service/app.py: `leader`).  They write their
metrics to one private directory, so a scrape of any of them reports all of them
(prometheus_client's multiprocess mode, service/metrics.py).  Children die with this process
(PR_SET_PDEATHSIG), so a gateway killed outright stops serving and renewing leases at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from core.settings import GatewaySettings

log = logging.getLogger("easel.gateway")
STARTUP_FAILURE = 3  # uvicorn's exit code when the app could not start: a restart won't help
RESTART_STABLE = 30.0  # seconds: a child that ran this long crashed, it is not crash-looping


def bind(host: str, port: int, share: bool) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    return sock


def serve_one(settings: GatewaySettings, processes: int, index: int | None) -> None:
    """One gateway process (uvicorn); with an `index`, one of `processes` supervised siblings
    on SO_REUSEPORT sockets (the first runs the gateway's housekeeping: service/app.py)."""
    shared = index is not None
    import uvicorn

    from core.logs import setup_logging
    from service.app import create_app
    from service.slow_clients import guarded_protocol

    setup_logging(settings.log_json, component="gateway")
    # Slow or oversized requests are cut off here too, not only by a proxy in front
    # (docs/deploy.md#reverse-proxy); no websockets are served, so none are parsed.
    # log_config=None: uvicorn's loggers go through Easel's handler (JSON lines included).
    config = uvicorn.Config(
        create_app(settings, processes, leader=not index), host=settings.host, port=settings.port,
        log_level="warning", log_config=None, timeout_graceful_shutdown=30,
        http=guarded_protocol(settings.header_timeout_seconds, settings.max_header_bytes),
        ws="none", timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes, server_header=False)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[bind(settings.host, settings.port, True)] if shared else None)
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def die_with(supervisor: int) -> None:
    """SIGKILL this child when its supervisor dies, however it dies: the kernel's signal
    (Linux), and a watch on the parent's pid for the rest, and for a supervisor that died
    before this ran (while this child was still starting)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != supervisor:
        os._exit(1)
    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


class Supervisor:
    """Runs `count` gateway processes on one port until SIGTERM or SIGINT."""

    def __init__(self, settings: GatewaySettings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.started: dict[int, float] = {}
        self.delay: dict[int, float] = {}
        self.stopping = False

    def run(self) -> int:
        holder = bind(self.settings.host, self.settings.port, True)  # fails now if taken
        metrics = tempfile.mkdtemp(prefix="easel-gateway-metrics-")
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("serving on %s:%d with %d gateway processes", self.settings.host,
                 self.settings.port, self.count)
        try:
            for i in range(self.count):
                self._spawn(i, env)
            return self._supervise(env, metrics)
        finally:
            self._stop_all()
            holder.close()
            shutil.rmtree(metrics, ignore_errors=True)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _spawn(self, index: int, env: dict[str, str]) -> None:
        self.children[index] = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--process", str(index), "--supervisor",
             str(os.getpid())], env=env)
        self.started[index] = time.monotonic()

    def _supervise(self, env: dict[str, str], metrics: str) -> int:
        from prometheus_client import multiprocess

        due: dict[int, float] = {}
        while not self.stopping:
            now = time.monotonic()
            for index, child in self.children.items():
                code = child.poll()
                if code is None or index in due:
                    continue
                # Its live gauges (requests waiting) leave the sums; its counters stay.
                multiprocess.mark_process_dead(child.pid, metrics)
                if code == STARTUP_FAILURE:  # Redis or the settings: a restart won't help
                    log.error("gateway process %d could not start; stopping", index)
                    return STARTUP_FAILURE
                ran = now - self.started[index]
                self.delay[index] = 0.0 if ran > RESTART_STABLE else \
                    min(10.0, max(0.5, 2 * self.delay.get(index, 0.0)))
                due[index] = now + self.delay[index]
                log.warning("gateway process %d exited with %s after %.0fs; restarting in "
                            "%.1fs", index, code, ran, self.delay[index])
            for index in [i for i, t in due.items() if now >= t]:
                del due[index]
                self._spawn(index, env)
            time.sleep(0.2)
        return 0

    def _stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 35  # uvicorn's graceful shutdown is 30 s
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def serve(process: int | None, supervisor: int | None = None) -> None:
    if supervisor is not None:  # first: the supervisor may already be gone
        die_with(supervisor)
    settings = GatewaySettings()
    count = settings.gateway_process_count()
    if process is not None or count == 1:  # a child of the supervisor, or the only process
        serve_one(settings, count, process)
        return
    from core.logs import setup_logging

    setup_logging(settings.log_json, component="gateway")
    raise SystemExit(Supervisor(settings, count).run())
