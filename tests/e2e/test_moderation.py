"""Moderation through the running service with its defaults: a prompt on the default lists is a
400 `moderation_blocked` naming its categories, on every endpoint and before any stream starts;
`moderation=low` relaxes what docs/moderation.md says; refusals are counted."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from PIL import Image

from tests.conftest import FAST, Stack


def _refusal(call: object) -> dict:
    with pytest.raises(openai.BadRequestError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == "moderation_blocked"
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "image_generation_user_error"
    return body


def test_a_prompt_on_the_default_list_is_refused(stack: Stack) -> None:
    client = stack.client()
    body = _refusal(lambda: client.images.generate(model="dall-e-3",
                                                   prompt="a portrait of Taylor Swift"))
    assert body["safety_violations"] == ["public_figure"] and body["param"] == "prompt"
    body = _refusal(lambda: client.images.generate(
        model="gpt-image-1", prompt="a nude figure in the style of Greg Rutkowski",
        extra_body=FAST))
    assert body["safety_violations"] == ["living_artist", "sexual"]
    scrape = httpx.get(f"{stack.base_url}/metrics").text
    assert ('easel_moderation_blocked_total{category="public_figure",stage="prompt"}'
            in scrape)


def test_low_relaxes_public_figures_but_never_minors(stack: Stack) -> None:
    client = stack.client()
    prompt = "Taylor Swift holding a red circle"
    _refusal(lambda: client.images.generate(model="gpt-image-1", prompt=prompt,
                                            moderation="auto", extra_body=FAST))
    ok = client.images.generate(model="gpt-image-1", prompt=prompt, moderation="low",
                                extra_body=FAST)
    assert ok.data[0].b64_json
    body = _refusal(lambda: client.images.generate(
        model="gpt-image-1", prompt="a naked 12 year old", moderation="low", extra_body=FAST))
    assert body["safety_violations"] == ["sexual/minors"]


def test_edits_and_streams_are_screened_before_anything_starts(stack: Stack) -> None:
    client = stack.client()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, "PNG")
    body = _refusal(lambda: client.images.edit(model="easel-shapes", image=buf.getvalue(),
                                               prompt="make it gory", extra_body=FAST))
    assert body["safety_violations"] == ["violence/graphic"]
    response = httpx.post(f"{stack.base_url}/v1/images/generations", timeout=30, json={
        "model": "gpt-image-1", "prompt": "Barack Obama", "stream": True, "steps": 4})
    assert response.status_code == 400  # a JSON refusal, not an event stream
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["safety_violations"] == ["public_figure"]


def test_dall_e_3_reports_the_prompt_it_rendered(stack: Stack) -> None:
    client = stack.client()
    three = client.images.generate(model="dall-e-3", prompt="a blue square", extra_body=FAST)
    assert three.data[0].revised_prompt == "a blue square"  # no rewriter configured
    two = client.images.generate(model="dall-e-2", prompt="a blue square", size="256x256",
                                 extra_body=FAST)
    assert two.data[0].revised_prompt is None  # OpenAI returns it for dall-e-3 only
