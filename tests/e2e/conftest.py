"""Fixtures the end-to-end tests share: one headless Chromium per test module (browser tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.test_playground import ARGS, CHROMIUM, RENDER_MS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # An assertion in these tests may wait on a render (pages wait as long: open_page), and
    # Playwright's 5 s default is less than one default-steps render on a loaded 2-core CI.
    expect.set_options(timeout=RENDER_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()
