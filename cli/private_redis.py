"""`easel up`'s private Redis: a loopback port, a password only this user can read, AOF on.

RQ workers import whatever a job names, so whoever reaches this Redis must not be able to write
jobs into it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_dir(path: Path) -> Path:
    """Create `path` for this user only (0700), tightening one made by an older Easel."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def redis_password(data_dir: Path) -> str:
    """The private Redis's password: made once, then kept (0600) beside the AOF it protects, so
    a restart serves the persisted jobs under the same password."""
    path = data_dir / "password"
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    path.chmod(0o600)
    return password


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f":***@{parts.hostname}:{parts.port}").geturl()


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private Redis on a free loopback port, with a password: RQ workers import whatever a
    job names, so whoever reaches this Redis must not be able to write jobs into it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it (Debian: apt-get install "
                         "redis-server) or set EASEL_REDIS_URL to an existing Redis")
    port = free_port()
    private_dir(data_dir)
    for path in data_dir.rglob("*"):  # the AOF of an older Easel may be world-readable
        path.chmod(0o700 if path.is_dir() else 0o600)
    password = redis_password(data_dir)
    # AOF on and noeviction: queued jobs survive a restart and are never silently dropped.
    # The password arrives as a config file on stdin ("-"), never in argv where `ps` shows it
    # to every user; umask 077 makes everything Redis writes (the AOF) readable by us only.
    proc = subprocess.Popen([binary, "-", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data_dir), "--appendonly", "yes",
                             "--appendfsync", "everysec", "--save", "",
                             "--maxmemory-policy", "noeviction"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, umask=0o077)
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"requirepass {password}\n".encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it exited at once (its log says why); the wait below reports it
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()  # never leave it behind
    proc.wait(timeout=10)
    raise SystemExit("redis-server did not start")
