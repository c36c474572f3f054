"""API keys against a real gateway: hashes configured, 401 envelopes, SDK works with a good key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from service.auth import hash_key
from tests.conftest import FAST, Stack
from tests.support import Gateway


@pytest.fixture(scope="module")
def keyed(stack: Stack) -> Iterator[Gateway]:
    env = dict(stack.env, EASEL_AUTH="required",
               EASEL_API_KEYS=f"alice:{hash_key('sk-alice')},bob:{hash_key('sk-bob')}")
    gw = Gateway(env).start()
    yield gw
    gw.stop()


def test_missing_and_wrong_keys_are_401(keyed: Gateway) -> None:
    url = f"{keyed.base_url}/v1/images/generations"
    for headers in ({}, {"authorization": "Bearer sk-wrong-key"}, {"authorization": "Basic x"}):
        r = httpx.post(url, json={"prompt": "a red circle"}, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key" not in r.text


def test_sdk_with_valid_keys(keyed: Gateway) -> None:
    for key in ("sk-alice", "sk-bob"):
        c = openai.OpenAI(base_url=f"{keyed.base_url}/v1", api_key=key, max_retries=0)
        r = c.images.generate(prompt="a red circle", size="256x256",
                              response_format="b64_json", extra_body=FAST)
        assert r.data[0].b64_json
    bad = openai.OpenAI(base_url=f"{keyed.base_url}/v1", api_key="sk-eve", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_health_needs_no_key(keyed: Gateway) -> None:
    assert httpx.get(f"{keyed.base_url}/healthz").status_code == 200


def test_required_auth_without_keys_refuses_to_start(stack: Stack) -> None:
    from core.settings import GatewaySettings
    from service.app import create_app

    with pytest.raises(RuntimeError, match="EASEL_API_KEYS"):
        create_app(GatewaySettings(redis_url=stack.redis.url, auth="required", api_keys=""))


def test_per_key_rate_limit_and_concurrency(stack: Stack) -> None:
    env = dict(stack.env, EASEL_AUTH="required", EASEL_API_KEYS=f"carol:{hash_key('sk-carol')}",
               EASEL_KEY_REQUESTS_PER_MINUTE="3")
    gw = Gateway(env).start()
    try:
        c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="sk-carol", max_retries=0)
        for _ in range(3):
            c.images.generate(prompt="a red circle", size="256x256", response_format="b64_json",
                              extra_body=FAST)
        with pytest.raises(openai.RateLimitError) as limited:
            c.images.generate(prompt="a red circle", size="256x256", extra_body=FAST)
        assert limited.value.response.headers.get("retry-after")
    finally:
        gw.stop()
