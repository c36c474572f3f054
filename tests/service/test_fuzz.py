"""Schemathesis against the gateway's own OpenAPI document: no generated request gets a 5xx.

The gateway runs in-process on a private Redis with a fake worker heartbeat and a queue cap of
zero, so every request that passes validation is answered 429 (queue full) instead of waiting for
a render: the fuzzing exercises parsing, validation, uploads and routing, fast.
`EASEL_FUZZ_EXAMPLES` raises the number of cases per operation (the longer documented run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from redis import Redis

from core import liveness
from core.settings import GatewaySettings
from service.app import create_app
from tests.support import RedisServer

EXAMPLES = int(os.environ.get("EASEL_FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("fuzz-redis")).start()
    liveness.beat(Redis.from_url(server.url), "fuzz-worker", ["easel:shapes"], 15)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # allowed_hosts: schemathesis calls in-process as Host "testserver".
    app = create_app(GatewaySettings(redis_url=fuzz_redis.url, auth="off", max_queue_depth=0,
                                     allowed_hosts="testserver",
                                     storage_dir=tmp_path_factory.mktemp("fuzz-files")))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_generated_request_gets_a_server_error(fuzz_schema: Any,
                                                 fuzz_redis: RedisServer) -> None:
    # Schemathesis' own pytest plugin does not load under this pytest; drive its strategies
    # with Hypothesis directly: every operation in /openapi.json, EXAMPLES cases each.
    redis = Redis.from_url(fuzz_redis.url)
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert {"/v1/images/generations", "/v1/images/edits", "/v1/images/variations"} <= {
        op.path for op in operations}
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            nonlocal calls
            liveness.beat(redis, "fuzz-worker", ["easel:shapes"], 15)  # it expires after 15 s
            response = case.call()
            calls += 1
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            assert response.status_code != 422
            if response.status_code >= 400 and "json" in response.headers.get(
                    "content-type", ""):
                error = response.json().get("error")
                assert error and {"message", "type", "param", "code"} <= set(error)

        check()
    assert calls >= 1000 or EXAMPLES < 300  # the issue asks for at least 1,000 cases
