"""`easel up`'s private Redis: a password always, kept out of `ps`, files for this user only."""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from cli.private_redis import private_dir, redacted, start_redis
from tests.support import stop


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def data(tmp_path: Path) -> Iterator[Path]:
    yield private_dir(tmp_path / ".easel")


def test_the_private_redis_requires_its_password(data: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    argv: list[list[str]] = []
    real = subprocess.Popen

    def recording(args: list[str], *rest: Any, **kw: Any) -> subprocess.Popen[bytes]:
        argv.append([str(a) for a in args])
        return real(args, *rest, **kw)

    monkeypatch.setattr(subprocess, "Popen", recording)
    proc, url = start_redis(data / "redis")
    try:
        password = (data / "redis" / "password").read_text().strip()
        assert len(password) >= 32 and url == f"redis://:{password}@{url.split('@', 1)[1]}"
        anonymous = url.replace(f":{password}@", "")
        with pytest.raises((AuthenticationError, ResponseError)):  # NOAUTH
            Redis.from_url(anonymous).ping()
        with pytest.raises((AuthenticationError, ResponseError)):
            Redis.from_url(url.replace(password, "0" * len(password))).ping()
        assert Redis.from_url(url).ping()
        # `ps` shows argv to every user (until redis-server rewrites its process title).
        assert argv and not any(password in word for args in argv for word in args)
        assert password not in redacted(url) and "***" in redacted(url)
    finally:
        stop(proc)


def test_a_restart_keeps_password_and_jobs_and_files_stay_private(data: Path) -> None:
    redis_dir = data / "redis"
    proc, url = start_redis(redis_dir)
    try:
        Redis.from_url(url).set("easel:probe", "kept")
        time.sleep(1.2)  # appendfsync everysec
    finally:
        stop(proc)
    proc, again = start_redis(redis_dir)
    try:
        assert again.split("@")[0] == url.split("@")[0]  # the same password
        assert Redis.from_url(again).get("easel:probe") == b"kept"
    finally:
        stop(proc)
    assert _mode(data) == _mode(redis_dir) == 0o700
    assert _mode(redis_dir / "password") == 0o600
    written = [p for p in redis_dir.rglob("*") if p.name != "password"]
    assert any("appendonly" in p.name for p in written), written
    for path in written:
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_an_older_world_readable_data_dir_is_tightened(tmp_path: Path) -> None:
    redis_dir = tmp_path / ".easel" / "redis"
    (redis_dir / "appendonlydir").mkdir(parents=True)
    (tmp_path / ".easel").chmod(0o755)
    old = redis_dir / "appendonlydir" / "appendonly.aof.1.incr.aof"
    old.write_text("")
    old.chmod(0o644)
    private_dir(tmp_path / ".easel")
    proc, _url = start_redis(redis_dir)
    stop(proc)
    assert _mode(tmp_path / ".easel") == 0o700
    assert _mode(old) == 0o600 and _mode(old.parent) == 0o700
