"""The playground offers the server's samplers and LoRA adapters (service/static/js/samplers.js)
and sends the chosen ones: checked in Chromium against the session stack, the request intercepted
before it reaches the worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Stack

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (make test-deps installs it)",
                allow_module_level=True)

from playwright.sync_api import Browser, Route  # noqa: E402


def test_samplers_and_adapters_come_from_the_server(stack: Stack, browser: Browser) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sent: list[dict[str, object]] = []

    def capture(route: Route) -> None:
        sent.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=400, content_type="application/json",
                      body='{"error": {"message": "intercepted", "type": "x", "param": null, '
                           '"code": null}}')

    page.route("**/v1/images/generations", capture)
    page.goto(stack.base_url + "/")
    page.locator("#model").select_option("easel-shapes")
    page.wait_for_function("document.querySelectorAll('#scheduler option').length > 1")
    schedulers = page.locator("#scheduler option").evaluate_all(
        "os => os.map(o => o.textContent)")
    assert schedulers[0] == "(the model's own)" and "euler-a" in schedulers
    adapters = page.locator("#lora option").evaluate_all("os => os.map(o => o.value)")
    assert adapters == ["", "outline"]
    page.locator("details.advanced summary").click()
    page.locator("#scheduler").select_option("euler-a")
    page.locator("#lora").select_option("outline")
    page.locator("#lora-scale").fill("0.8")
    page.locator("#prompt").fill("a red circle")
    page.locator("#generate").click()
    for _ in range(100):
        if sent:
            break
        page.wait_for_timeout(100)
    assert sent, "no generation request was sent"
    body = sent[0]
    assert body["scheduler"] == "euler-a"
    assert body["loras"] == [{"name": "outline", "scale": 0.8}]
    assert errors == []
