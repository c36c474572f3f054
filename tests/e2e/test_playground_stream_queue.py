"""A streamed request's card shows its place in the queue before the first preview: the server
says it in SSE comments (`: queue_position=N`), which SDKs skip and the playground reads.

A fake heartbeat stands in for a worker that never takes a job, so the queue only grows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from redis import Redis

from core import liveness
from tests.e2e.test_playground import PHONE, open_page
from tests.e2e.test_playground_keep import LAPTOP_900
from tests.support import Gateway, RedisServer, base_env, wait_ready


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway whose only 'worker' is a heartbeat: jobs wait in the queue for ever."""
    root: Path = tmp_path_factory.mktemp("queue")
    server = RedisServer(root / "redis").start()
    redis = Redis.from_url(server.url)
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            liveness.beat(redis, "idle-worker", ["easel:shapes"], 10)
            stop.wait(1)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    env = base_env(server.url, root, EASEL_STREAM_STATUS_SECONDS="0.3",
                   EASEL_ON_DISCONNECT="cancel")
    gateway = Gateway(env, log=root / "gateway.log").start()
    try:
        wait_ready(gateway.base_url, timeout=60)
        yield gateway.base_url
    finally:
        gateway.stop()
        stop.set()
        thread.join()
        server.stop()


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP_900, PHONE], ids=["laptop", "phone"])
def test_a_streamed_request_shows_its_queue_place(browser: Browser, idle_stack: str,
                                                  viewport: tuple[int, int]) -> None:
    page, errors = open_page(browser, idle_stack, viewport)
    page.select_option("#model", "easel-shapes")  # a streaming model: n=1 streams
    page.select_option("#size", "64x64")
    for prompt in ("a red circle", "a blue square"):
        page.get_by_test_id("prompt").fill(prompt)
        page.get_by_test_id("generate").click()
    cards = page.get_by_test_id("pending")
    expect(cards).to_have_count(2)
    first, second = (page.locator(f".pending[data-request='{n}']") for n in (1, 2))
    expect(first.get_by_test_id("progress")).to_contain_text("queued, next")
    expect(second.get_by_test_id("progress")).to_contain_text("queued, 1 ahead")
    # Cancel hangs up the first stream; the server drops its queued job, and the second moves up.
    first.get_by_test_id("cancel").click()
    expect(cards).to_have_count(1)
    expect(second.get_by_test_id("progress")).to_contain_text("queued, next")
    second.get_by_test_id("cancel").click()
    expect(cards).to_have_count(0)
    assert errors == []
