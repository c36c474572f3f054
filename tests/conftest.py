"""Session-wide real services: a private Redis, an Easel gateway and one worker process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FAST = {"steps": 4}  # extra_body for plumbing tests: real model, few denoising steps


@dataclass
class Stack:
    redis: RedisServer
    gateway: Gateway
    env: dict[str, str]
    data: Path

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def client(self, **kw: object):  # type: ignore[no-untyped-def]
        from openai import OpenAI

        return OpenAI(base_url=f"{self.base_url}/v1", api_key="sk-test", max_retries=0,
                      timeout=120, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gateway under uvicorn + one real worker process holding the embedded model."""
    data = tmp_path_factory.mktemp("easel")
    env = base_env(redis_server.url, data)
    worker = start_worker(env, "test-worker-0")
    gateway = Gateway(env).start()
    try:
        wait_ready(gateway.base_url)
        yield Stack(redis_server, gateway, env, data)
    finally:
        gateway.stop()
        stop(worker)


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[Redis]:
    """A private, empty Redis for one test, as a client."""
    server = RedisServer(tmp_path / "redis").start()
    yield Redis.from_url(server.url)
    server.stop()
