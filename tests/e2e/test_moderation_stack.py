"""Moderation and prompt rewriting configured: per-key levels, the worker's output classifier
(a test hook that flags 128-pixel images), and a rewriter pointed at a small chat-completions
server this test runs, with its fallbacks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import openai
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service.auth import hash_key
from tests.conftest import FAST
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

CELEBRITY = "Taylor Swift"


class Chat(BaseHTTPRequestHandler):
    """POST /v1/chat/completions, answering by what the prompt asks of it."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Chat.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                          **body})
        prompt = body["messages"][-1]["content"]
        if "slow" in prompt:
            time.sleep(3)
        if "broken" in prompt:
            self.send_response(500)
            self.end_headers()
            return
        text = f"A detailed picture of {prompt}, centred on a plain white background"
        if "celebrity" in prompt:
            text = f"{CELEBRITY} holding {prompt}"
        answer = json.dumps({"choices": [{"message": {"role": "assistant",
                                                      "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Configured:
    base_url: str
    redis_url: str

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=key, max_retries=0,
                             timeout=120)


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Configured]:
    data = tmp_path_factory.mktemp("moderated")
    chat = ThreadingHTTPServer(("127.0.0.1", 0), Chat)
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    redis = RedisServer(data / "redis").start()
    env = base_env(redis.url, data, EASEL_AUTH="required",
                   EASEL_API_KEYS=f"alice:{hash_key('sk-alice')},bob:{hash_key('sk-bob')}",
                   EASEL_MODERATION_KEYS="bob=low",
                   EASEL_OUTPUT_CLASSIFIER="tests.workers.flagging_classifier:classify",
                   EASEL_REWRITE_URL=f"http://127.0.0.1:{chat.server_port}/v1",
                   EASEL_REWRITE_MODEL="tiny-chat", EASEL_REWRITE_API_KEY="sk-chat",
                   EASEL_REWRITE_TIMEOUT_SECONDS="1")
    worker = start_worker(env, "moderated-worker")
    gateway = Gateway(env).start()
    try:
        wait_ready(gateway.base_url)
        yield Configured(gateway.base_url, redis.url)
    finally:
        gateway.stop()
        stop(worker)
        redis.stop()
        chat.shutdown()


def _blocked(call: Any) -> dict[str, Any]:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    assert caught.value.code == "moderation_blocked"
    assert isinstance(caught.value.body, dict)
    return caught.value.body


def test_per_key_defaults(configured: Configured) -> None:
    prompt = f"{CELEBRITY} and a red circle"
    alice, bob = configured.client("sk-alice"), configured.client("sk-bob")
    _blocked(lambda: alice.images.generate(model="dall-e-2", prompt=prompt, size="256x256",
                                           extra_body=FAST))
    assert bob.images.generate(model="dall-e-2", prompt=prompt, size="256x256",
                               extra_body=FAST).data[0].url
    # A request's own level wins over its key's default.
    _blocked(lambda: bob.images.generate(model="gpt-image-1", prompt=prompt, moderation="auto",
                                         extra_body=FAST))


def test_the_output_classifier_withholds_images_unless_low(configured: Configured) -> None:
    alice, bob = configured.client("sk-alice"), configured.client("sk-bob")
    body = _blocked(lambda: alice.images.generate(model="easel-shapes", prompt="a red circle",
                                                  size="128x128", extra_body=FAST))
    assert body["safety_violations"] == ["sexual"] and body["param"] is None
    assert alice.images.generate(model="easel-shapes", prompt="a red circle", size="64x64",
                                 extra_body=FAST).data[0].url
    assert bob.images.generate(model="easel-shapes", prompt="a red circle", size="128x128",
                               extra_body=FAST).data[0].url  # bob's default is low
    assert alice.images.generate(model="easel-shapes", prompt="a red circle", size="128x128",
                                 moderation="low", extra_body=FAST).data[0].url
    scrape = httpx.get(f"{configured.base_url}/metrics").text
    assert 'easel_moderation_blocked_total{category="sexual",stage="output"} 1.0' in scrape


def _rendered_prompt(configured: Configured, url: str) -> str:
    job_id = url.split("/images/", 1)[1].split("/", 1)[0]
    job = Job.fetch(job_id, connection=Redis.from_url(configured.redis_url),
                    serializer=JSONSerializer)
    return str(job.args[0]["prompt"])


def test_dall_e_3_prompts_are_rewritten_and_the_rewrite_is_rendered(
        configured: Configured) -> None:
    Chat.seen.clear()
    alice = configured.client("sk-alice")
    image = alice.images.generate(model="dall-e-3", prompt="two green triangles",
                                  extra_body=FAST).data[0]
    revised = "A detailed picture of two green triangles, centred on a plain white background"
    assert image.revised_prompt == revised
    assert image.url and _rendered_prompt(configured, image.url) == revised
    sent = Chat.seen[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["model"] == "tiny-chat"
    assert sent["auth"] == "Bearer sk-chat"
    assert sent["messages"][0]["role"] == "system"
    assert "rewrite prompts" in sent["messages"][0]["content"]
    # Other ids are not rewritten (EASEL_REWRITE_MODELS=dall-e-3 by default).
    two = alice.images.generate(model="dall-e-2", prompt="a red circle", size="256x256",
                                extra_body=FAST).data[0]
    assert two.revised_prompt is None and len(Chat.seen) == 1


@pytest.mark.parametrize("prompt", ["a slow blue square", "a broken blue square",
                                    "a celebrity and a blue square"])
def test_a_failed_or_refused_rewrite_renders_the_original(configured: Configured,
                                                          prompt: str) -> None:
    t0 = time.monotonic()
    image = configured.client("sk-alice").images.generate(model="dall-e-3", prompt=prompt,
                                                          extra_body=FAST).data[0]
    assert image.revised_prompt == prompt
    assert image.url and _rendered_prompt(configured, image.url) == prompt
    assert time.monotonic() - t0 < 60
    scrape = httpx.get(f"{configured.base_url}/metrics").text
    outcome = {"slow": "timeout", "broken": "error", "celebrity": "refused"}[prompt.split()[1]]
    assert f'easel_prompt_rewrites_total{{outcome="{outcome}"}} 1.0' in scrape
