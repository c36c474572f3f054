"""Issue 19, the rest: several requests in flight, each card with its own progress, queue place
and Cancel; copy seed; announcements and focus; a request whose worker is killed.

Same browser and helpers as test_playground.py; each test takes seconds.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.conftest import Stack
from tests.e2e.test_playground import PHONE, generate, open_page, shot
from tests.e2e.test_playground_keep import LAPTOP_900, close, png
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

VIEWPORTS = pytest.mark.parametrize("viewport", [LAPTOP_900, PHONE], ids=["laptop", "phone"])


def phone_kw(viewport: tuple[int, int]) -> dict[str, Any]:
    return {"is_mobile": True, "has_touch": True} if viewport == PHONE else {}


# Image requests whose JSON body mentions "(slow)" never get an answer; they end only when the
# page aborts them. Everything else goes to the real server.
HANG_SLOW = """
const fetchBeforeSlow = window.fetch;
window.fetch = (input, init) => {
  const slow = String(input).includes('/v1/images/') && typeof init?.body === 'string'
    && init.body.includes('(slow)');
  if (!slow) return fetchBeforeSlow(input, init);
  return new Promise((_, reject) => init?.signal?.addEventListener('abort', () => {
    window.__aborted = (window.__aborted || 0) + 1;
    reject(new DOMException('The user aborted a request.', 'AbortError'));
  }));
};
"""


# Every state a request card's live region announced, in order, in window.__said.
RECORD_STATES = """
window.__said = [];
new MutationObserver((changes) => {
  for (const c of changes) {
    const node = c.target.nodeType === 1 ? c.target : c.target.parentElement;
    const said = node?.closest?.('.progress');
    if (said && window.__said.at(-1) !== said.textContent) window.__said.push(said.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def ask(page: Page, prompt: str) -> None:
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("generate").click()


@pytest.mark.browser
@VIEWPORTS
def test_several_requests_each_with_its_own_card_and_cancel(
        browser: Browser, stack: Stack, viewport: tuple[int, int]) -> None:
    page, errors = open_page(browser, stack.base_url, viewport, scripts=(HANG_SLOW,),
                             **phone_kw(viewport))
    page.select_option("#size", "64x64")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("4")
    ask(page, "a red circle (slow)")
    ask(page, "a blue square (slow)")
    cards = page.get_by_test_id("pending")
    expect(cards).to_have_count(2)  # the Generate button stays ready for the next one
    first, second = (page.locator(f".pending[data-request='{n}']") for n in (1, 2))
    expect(first.get_by_role("status")).to_contain_text("Generating #1: waiting for a preview")
    expect(second.get_by_role("status")).to_contain_text("Generating #2")
    expect(second).to_be_in_viewport()  # the newest card comes into view
    expect(first.get_by_role("button", name="Cancel Generating #1")).to_be_visible()
    # A third request finishes while the two wait: its result takes its own card's place.
    page.get_by_test_id("seed").fill("5")
    ask(page, "three green triangles")
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    result = page.locator(".item:not(.pending)").first
    expect(result).to_be_focused()  # the focus was on Generate: it moves to the new result
    expect(result).to_be_in_viewport()
    expect(page.get_by_test_id("announcer")).to_have_text(
        "Generating #3 is done: 1 image, first in Results.")
    expect(cards).to_have_count(2)
    shot(page, f"in-flight-{viewport[0]}", full=False)
    first.get_by_test_id("cancel").click()
    expect(cards).to_have_count(1)
    expect(page.get_by_test_id("notice")).to_contain_text("Cancelled Generating #1")
    assert page.evaluate("window.__aborted") == 1  # that request only
    expect(second.get_by_role("status")).to_contain_text("Generating #2")
    second.get_by_test_id("cancel").click()
    expect(cards).to_have_count(0)
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(page.get_by_test_id("error")).to_be_hidden()
    close(page, errors)


@pytest.mark.browser
@VIEWPORTS
def test_copy_seed(browser: Browser, stack: Stack, viewport: tuple[int, int]) -> None:
    page, errors = open_page(browser, stack.base_url, viewport,
                             permissions=["clipboard-read", "clipboard-write"],
                             **phone_kw(viewport))
    generate(page, "a yellow square at the top", seed="31")
    copy = page.locator(".item").first.get_by_test_id("copy-seed")
    expect(copy).to_have_attribute("aria-label", "Copy the seed of generation 1")
    copy.click()
    expect(page.get_by_test_id("notice")).to_have_text("Seed 31 of generation 1 copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "31"
    close(page, errors)


class FakeJobs:
    """The background-job API as the page sees it (service/job_routes.py): the test sets each
    job's state, the page polls it."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.prefer: list[str | None] = []
        self.unavailable = 0  # the next polls answered 503 (Redis away)

    def set(self, job_id: str, status: str, position: int | None = None,
            **extra: Any) -> None:
        self.jobs[job_id] = {"id": job_id, "object": "image.job", "status": status,
                             "queue_position": position, **extra}

    def submit(self, route: Route, request: Request) -> None:
        self.prefer.append(request.headers.get("prefer"))
        job_id = f"job_{len(self.prefer)}"
        self.set(job_id, "queued", 2 if job_id == "job_1" else 0)
        route.fulfill(status=202, json=self.jobs[job_id])

    def job(self, route: Route, request: Request) -> None:
        job_id = request.url.rsplit("/", 1)[1]
        if job_id not in self.jobs:
            route.fulfill(status=404, json={"error": {"message": f"no job {job_id}"}})
            return
        if self.unavailable and request.method == "GET":
            self.unavailable -= 1
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={"error": {
                "message": "unavailable", "type": "server_error", "param": None, "code": None}})
            return
        if request.method == "DELETE":
            self.deleted.append(job_id)
            if self.jobs[job_id]["status"] == "in_progress":
                route.fulfill(status=409, json={"error": {
                    "message": "already rendering", "type": "invalid_request_error",
                    "param": None, "code": "job_not_cancellable"}})
                return
            self.set(job_id, "cancelled")
        route.fulfill(json=self.jobs[job_id])


def two_images() -> dict[str, Any]:
    b64 = base64.b64encode(png(64, 64, (30, 90, 200))).decode()
    return {"created": 0, "data": [{"b64_json": b64, "seed": 7}, {"b64_json": b64, "seed": 8}]}


@pytest.mark.browser
@VIEWPORTS
def test_background_job_shows_its_queue_place_and_cancels(
        browser: Browser, stack: Stack, viewport: tuple[int, int]) -> None:
    """A request that is not streamed (n > 1) becomes a background job: its card shows the
    place in the queue, then rendering, then the results; Cancel deletes the job."""
    page, errors = open_page(browser, stack.base_url, viewport, **phone_kw(viewport),
                             scripts=("window.EASEL_JOB_POLL_MS = 50;",))
    jobs = FakeJobs()
    page.route("**/v1/images/generations", jobs.submit)
    page.route("**/v1/images/jobs/*", jobs.job)
    page.get_by_test_id("prompt").fill("three green triangles")
    page.fill("#n", "2")
    page.get_by_test_id("generate").click()
    card = page.get_by_test_id("pending")
    state = card.get_by_role("status")
    expect(state).to_have_text("Generating #1: queued, 2 ahead")
    assert jobs.prefer == ["respond-async"]
    expect(card.get_by_test_id("badge")).to_have_text("queued, 2 ahead")
    shot(page, f"queued-{viewport[0]}", full=False)
    jobs.unavailable = 2  # the server cannot say for a moment: the page asks again
    jobs.set("job_1", "queued", 0)
    expect(state).to_have_text("Generating #1: queued, next")
    assert jobs.unavailable == 0
    jobs.set("job_1", "in_progress")
    expect(state).to_have_text("Generating #1: rendering…")
    jobs.set("job_1", "completed", result=two_images())
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(card).to_have_count(0)
    expect(page.locator(".item").first).to_contain_text("7")  # each image's own seed
    # The next one is queued behind one job: the wait is guessed from the last render.
    page.get_by_test_id("generate").click()
    expect(state).to_contain_text(re.compile(r"Generating #2: queued, next, about \d+ s"))
    card.get_by_test_id("cancel").click()
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("notice")).to_contain_text("Cancelled Generating #2")
    # One that is already rendering cannot be deleted: the page says so and stops waiting.
    page.get_by_test_id("generate").click()
    expect(state).to_contain_text("Generating #3: queued")
    jobs.set("job_3", "in_progress")
    expect(state).to_have_text("Generating #3: rendering…")
    card.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("notice")).to_contain_text("already rendering")
    assert jobs.deleted == ["job_2", "job_3"]
    # A job that fails shows the server's message.
    page.get_by_test_id("generate").click()
    expect(state).to_contain_text("Generating #4: queued")
    jobs.set("job_4", "failed", status_code=500, error={
        "message": "The worker died twice while rendering.", "type": "server_error"})
    expect(page.get_by_test_id("error")).to_have_text("The worker died twice while rendering.")
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    close(page, errors)


@pytest.fixture(scope="module")
def lonely(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[tuple[Gateway, dict[str, str], list[subprocess.Popen]]]:
    """A gateway and one worker of their own (Redis db 3), hang-ups cancelling queued jobs and
    a dead worker noticed within seconds."""
    data = tmp_path_factory.mktemp("lonely")
    env = base_env(redis_server.url.rsplit("/", 1)[0] + "/3", data, EASEL_ON_DISCONNECT="cancel",
                   EASEL_HEARTBEAT_SECONDS="0.5", EASEL_LIVENESS_TTL_SECONDS="2",
                   EASEL_REAPER_SECONDS="0.5")
    workers = [start_worker(env, "lonely-worker")]
    gateway = Gateway(env).start()
    wait_ready(gateway.base_url)
    yield gateway, env, workers
    gateway.stop()
    for worker in workers:
        stop(worker, signal.SIGKILL)


@pytest.mark.browser
def test_killed_worker_shows_its_state_and_the_request_finishes(
        browser: Browser,
        lonely: tuple[Gateway, dict[str, str], list[subprocess.Popen]]) -> None:
    """Defect 1 for real: the worker dies mid-image. The card says it waits for a worker; once
    one is back the server retries the job and the same request finishes."""
    gateway, env, workers = lonely
    page, errors = open_page(browser, gateway.base_url, LAPTOP_900, scripts=(
        RECORD_STATES, "window.EASEL_HINT_AFTER_S = 1; window.EASEL_WORKER_CHECK_S = 0.5;"))
    page.get_by_test_id("prompt").fill("a red circle to the left of a blue square")
    page.select_option("#size", "128x128")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("100")  # the most allowed: the kill lands mid-image
    page.get_by_test_id("generate").click()
    card = page.get_by_test_id("pending")
    state = card.get_by_role("status")
    expect(state).to_contain_text("preview 1/3")
    workers[0].kill()  # SIGKILL: no goodbye, its heartbeat just stops
    first = page.locator(".pending[data-request='1']")
    expect(first.get_by_role("status")).to_contain_text("waiting for a worker")
    expect(first.get_by_test_id("card-hint")).to_contain_text("No worker serves easel-shapes")
    expect(first.get_by_test_id("elapsed")).to_have_text(re.compile(r"\d+ s"))
    # Meanwhile a batch (not streamed: a background job) waits in the real queue, behind it.
    page.get_by_test_id("steps").fill("4")
    page.fill("#n", "2")
    page.get_by_test_id("generate").click()
    second = page.locator(".pending[data-request='2']")
    expect(second.get_by_role("status")).to_have_text(
        re.compile(r"Generating #2: queued, (next|1 ahead)"))
    workers.append(start_worker(env, "lonely-worker-2"))
    expect(page.get_by_test_id("result-image")).to_have_count(3)
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("error")).to_be_hidden()
    said = page.evaluate("window.__said")
    assert any("retried on a worker, preview 1/3" in s for s in said), said
    assert said.index(next(s for s in said if "waiting for a worker" in s)) < len(said) - 1
    close(page, errors)
