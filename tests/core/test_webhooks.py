"""Webhook signatures: the Standard Webhooks scheme, exactly as the OpenAI SDK verifies it."""

from __future__ import annotations

import json

import openai
import pytest

from core.webhooks import event_body, new_event, new_secret, secret_bytes, sign, signed_headers


def test_the_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks specification's reference libraries.
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, '{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_openai_sdk_verifies_and_parses_a_signed_event() -> None:
    secret = new_secret()
    event = new_event("batch.completed", {"id": "batch_abc"})
    body = event_body(event)
    headers = signed_headers(secret, "msg_1", body)
    client = openai.OpenAI(api_key="unused", webhook_secret=secret)
    parsed = client.webhooks.unwrap(body, headers)
    assert parsed.type == "batch.completed" and parsed.data.id == "batch_abc"
    assert json.loads(body) == {"id": event["id"], "object": "event", "type": "batch.completed",
                                "created_at": event["created_at"], "data": {"id": "batch_abc"}}
    with pytest.raises(openai.InvalidWebhookSignatureError):  # another secret
        client.webhooks.unwrap(body, headers, secret=new_secret())
    with pytest.raises(openai.InvalidWebhookSignatureError):  # a replayed old delivery
        client.webhooks.unwrap(body, signed_headers(secret, "msg_1", body, timestamp=1000))


def test_secrets_are_decoded_like_the_sdks_do() -> None:
    assert len(secret_bytes(new_secret())) == 32
    assert secret_bytes("plain") == b"plain"
    with pytest.raises(ValueError):
        secret_bytes("whsec_not base64!")
