"""Free sizes in the playground: a model whose rules publish `custom_sizes` (gpt-image-2) offers
"Custom…" with width and height fields bounded by the rule; others do not."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Stack
from tests.e2e.test_playground import PHONE, open_page
from tests.e2e.test_playground_keep import LAPTOP_900


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP_900, PHONE], ids=["laptop", "phone"])
def test_custom_sizes_follow_the_published_rule(browser: Browser, stack: Stack,
                                                viewport: tuple[int, int]) -> None:
    page, errors = open_page(browser, stack.base_url, viewport)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/images/" in r.url else None)
    page.select_option("#model", "easel-shapes")
    assert "custom" not in page.locator("#size option").evaluate_all(
        "options => options.map(o => o.value)")
    page.select_option("#model", "gpt-image-2")
    expect(page.get_by_test_id("size-w")).to_be_hidden()
    page.select_option("#size", "custom")
    width, height = page.get_by_test_id("size-w"), page.get_by_test_id("size-h")
    expect(width).to_be_visible()
    assert width.get_attribute("step") == "16" and width.get_attribute("max") == "3840"

    page.get_by_test_id("prompt").fill("a red circle")
    width.fill("1000")  # not a multiple of 16: refused in the page, nothing sent
    height.fill("320")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("error")).to_contain_text("multiples of 16")
    assert sent == []

    width.fill("1600")  # 5:1: within the fields' bounds, so the server's rule answers
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("error")).to_contain_text("aspect ratio")

    width.fill("320")
    height.fill("160")
    page.get_by_test_id("generate").click()
    image = page.get_by_test_id("result-image").first
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=image.element_handle())
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 160]
    # The custom size is a setting like the others: a reload keeps it.
    page.reload()
    expect(page.get_by_test_id("size-w")).to_have_value("320")
    expect(page.locator("#size")).to_have_value("custom")
    assert errors == []
