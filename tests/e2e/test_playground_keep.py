"""Issue 19: a playground people keep open: cancel and hints, results in view, controls that
follow each model, clamped long prompts, history across reloads, outpainting sizes shown first.

Same browser and helpers as test_playground.py; each test takes seconds.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.conftest import Stack
from tests.e2e.test_playground import (
    HOLD_COMPLETED,
    PHONE,
    PIXELS,
    generate,
    open_page,
    sent_form,
    shot,
)

LAPTOP_900 = (1280, 900)


# Requests for images never get an answer; they end only when the page aborts them.
HANG = """
const fetchBeforeHang = window.fetch;
window.fetch = (input, init) => {
  if (!String(input).includes('/v1/images/')) return fetchBeforeHang(input, init);
  window.__hung = (window.__hung || 0) + 1;
  return new Promise((_, reject) => init?.signal?.addEventListener('abort', () => {
    window.__aborted = (window.__aborted || 0) + 1;
    reject(new DOMException('The user aborted a request.', 'AbortError'));
  }));
};
window.EASEL_HINT_AFTER_S = 1;
"""


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def upload(page: Page, tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / f"up-{width}x{height}.png"
    path.write_bytes(png(width, height))
    page.get_by_test_id("upload").set_input_files(str(path))
    expect(page.locator("#canvas-info")).to_contain_text(f"{width}×{height}")


def paint(page: Page) -> None:
    canvas = page.get_by_test_id("mask-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()


def close(page: Page, errors: list[str]) -> None:
    page.context.close()
    assert errors == []


@pytest.mark.browser
def test_cancel_and_hint_for_a_request_that_hangs(browser: Browser, stack: Stack) -> None:
    """Defect 1: a lost worker froze the page with no cancel and no hint."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900, scripts=(HANG,))
    page.get_by_test_id("prompt").fill("three green triangles")
    page.get_by_test_id("generate").click()
    card = page.get_by_test_id("pending")
    status = card.get_by_role("status")
    expect(status).to_contain_text("Generating #1")
    expect(card.get_by_test_id("elapsed")).to_have_text(re.compile(r"^\d+ s$"))
    hint = card.get_by_test_id("card-hint")
    expect(hint).to_be_visible()  # nothing heard for a while: say why and what to do
    expect(hint).to_contain_text("still working")
    expect(hint).to_contain_text("restarting")
    cancel = card.get_by_test_id("cancel")
    expect(cancel).to_be_in_viewport()
    shot(page, "hung", full=False)
    cancel.click()
    expect(card).to_have_count(0)  # the request's card went with it
    assert page.evaluate("window.__aborted") == 1  # the request itself was aborted
    expect(page.get_by_test_id("notice")).to_contain_text("Cancelled Generating #1")
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.get_by_test_id("generate")).to_be_enabled()
    expect(page.get_by_test_id("generate")).to_be_focused()  # back where the request began
    close(page, errors)


@pytest.mark.browser
def test_phone_generate_preview_and_result_come_into_view(browser: Browser,
                                                          stack: Stack) -> None:
    """Defect 2 on a phone: the preview and the result were below the fold."""
    page, errors = open_page(browser, stack.base_url, PHONE, scripts=(HOLD_COMPLETED,),
                             is_mobile=True, has_touch=True)
    page.get_by_test_id("prompt").fill("three green triangles")
    page.select_option("#size", "64x64")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("6")
    page.get_by_test_id("generate").click()
    page.wait_for_function("() => window.__events.some(e => !e.endsWith('.partial_image'))")
    pending = page.get_by_test_id("pending")
    expect(pending).to_be_in_viewport(ratio=0.9)
    page.evaluate("window.__release()")
    item = page.locator(".item").first
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(item).to_be_in_viewport(ratio=0.9)
    expect(item).to_be_focused()  # the pressed button disabled itself: focus goes to the result
    expect(page.locator(".keys-hint")).not_to_be_visible()  # no Ctrl+Enter on a phone
    close(page, errors)


@pytest.mark.browser
def test_edit_result_shows_in_the_editor(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    """Defect 2 at 1280×900: the edit's preview and result landed below the editor, which kept
    the old image. Now previews show over the picture and the editor continues from the result."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900, scripts=(HOLD_COMPLETED,))
    upload(page, tmp_path, 64, 64)
    paint(page)
    page.get_by_test_id("edit-prompt").fill("a green circle")
    page.get_by_test_id("edit-submit").click()
    page.wait_for_function("() => window.__events.some(e => !e.endsWith('.partial_image'))")
    preview = page.get_by_test_id("edit-preview")
    expect(preview).to_be_visible()
    expect(preview).to_be_in_viewport()
    page.evaluate("window.__release()")
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(preview).to_be_hidden()
    info = page.locator("#canvas-info")
    expect(info).to_contain_text("Editing edit")
    expect(info).to_be_in_viewport()
    expect(page.get_by_test_id("mask-canvas")).to_be_in_viewport()
    result = page.locator(".item").first.get_by_test_id("result-image").evaluate(PIXELS)
    assert page.locator("#image-canvas").evaluate("c => c.toDataURL('image/png')") == result
    close(page, errors)


@pytest.mark.browser
def test_steps_limit_and_editor_model_follow_the_server(browser: Browser, stack: Stack,
                                                        tmp_path: Path) -> None:
    """Defect 3: Steps allowed 150 (the server takes 100); the editor used the Generate form's
    model."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/images/" in r.url else None)
    assert page.get_by_test_id("steps").get_attribute("max") == "100"
    page.get_by_test_id("prompt").fill("three green triangles")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("150")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("error")).to_contain_text("1 to 100")
    assert sent == []  # refused in the page, not by the server
    page.get_by_test_id("steps").fill("4")
    # The editor has its own model: the Generate form's dall-e-2 does not carry over silently.
    page.select_option("#model", "dall-e-2")
    upload(page, tmp_path, 64, 64)
    models = page.get_by_test_id("edit-model").evaluate("s => [...s.options].map(o => o.value)")
    assert "dall-e-3" not in models and "easel-shapes" in models
    page.get_by_test_id("edit-model").select_option("easel-shapes")
    expect(page.locator("#edit-size")).to_have_value("64x64")  # from the editor's model
    paint(page)
    page.get_by_test_id("edit-prompt").fill("a blue square")
    page.get_by_test_id("edit-submit").click()
    parts = sent_form(page, "/v1/images/edits")
    assert parts["model"] == b"easel-shapes" and parts["size"] == b"64x64"
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.get_by_test_id("error")).to_be_hidden()
    close(page, errors)


@pytest.mark.browser
@pytest.mark.parametrize("viewport", [LAPTOP_900, PHONE], ids=["laptop", "phone"])
def test_reload_keeps_settings_and_results(browser: Browser, stack: Stack,
                                           viewport: tuple[int, int]) -> None:
    """Defect 5: a reload lost every result, the prompt and the settings."""
    page, errors = open_page(browser, stack.base_url, viewport)
    generate(page, "a yellow square at the top", size="128x128", steps="5", seed="42")
    page.get_by_test_id("prompt").fill("a prompt still being written")
    page.reload()
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(page.get_by_test_id("prompt")).to_have_value("a prompt still being written")
    expect(page.locator("#size")).to_have_value("128x128")
    expect(page.get_by_test_id("steps")).to_have_value("5")
    expect(page.get_by_test_id("seed")).to_have_value("42")
    item = page.locator(".item").first
    expect(item).to_contain_text("a yellow square at the top")
    expect(item).to_contain_text("42")
    expect(item.get_by_test_id("edit")).to_be_visible()
    page.get_by_test_id("clear-history").click()
    expect(page.get_by_test_id("result-image")).to_have_count(0)
    page.reload()
    expect(page.locator("#size")).to_have_value("128x128")
    expect(page.get_by_test_id("result-image")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    close(page, errors)


def fake_image(route: Route, request: Request) -> None:
    """An instant answer for a generation (no worker time): a small PNG as b64_json."""
    route.fulfill(json={"created": 0, "data": [{"b64_json": base64.b64encode(
        png(96, 64, (30, 90, 200))).decode()}]})


@pytest.mark.browser
def test_long_prompt_is_clamped_and_counted(browser: Browser, stack: Stack) -> None:
    """Defect 4: a 5000-character prompt made a 3,100 px card, repeated in alt and labels, and
    no counter showed the model's limit."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    page.route("**/v1/images/generations", fake_image)
    page.select_option("#model", "gpt-image-1")
    prompt = ("a very long description of shapes " * 160)[:5000]
    page.get_by_test_id("prompt").fill(prompt)
    count = page.get_by_test_id("prompt-count")
    expect(count).to_have_text("5000 / 32000")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    item = page.locator(".item:not(.pending)").first
    expect(item).to_be_visible()
    box = item.bounding_box()
    assert box and box["height"] < 700, box
    assert len(item.get_by_test_id("result-image").get_attribute("alt") or "") <= 80
    for label in item.locator("[aria-label]").evaluate_all(
            "ns => ns.map(n => n.getAttribute('aria-label'))"):
        assert len(label) <= 90, label
    more = item.get_by_test_id("more")
    more.click()
    expect(more).to_have_attribute("aria-expanded", "true")
    grown = item.bounding_box()
    assert grown and grown["height"] > box["height"]
    # easel-shapes takes 4000: the counter says so and the page does not send it.
    page.select_option("#model", "easel-shapes")
    expect(count).to_have_text("5000 / 4000")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("error")).to_contain_text("at most 4000")
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    close(page, errors)


@pytest.mark.browser
def test_outpaint_size_is_shown_before_submit(browser: Browser, stack: Stack,
                                              tmp_path: Path) -> None:
    """Defect 6: Extend Right was padded square only on submit; a 3:2 upload to gpt-image-1 was
    padded square although 1536x1024 matches it."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    upload(page, tmp_path, 300, 200)
    page.get_by_test_id("edit-model").select_option("gpt-image-1")
    expect(page.locator("#edit-size")).to_have_value("1536x1024")  # the matching shape
    plan = page.get_by_test_id("edit-plan")
    expect(plan).to_contain_text("as 300×200")
    expect(plan).not_to_contain_text("padded")
    page.get_by_test_id("edit-model").select_option("easel-shapes")
    page.get_by_role("button", name="Reset").click()
    page.get_by_role("button", name="Right ▶").click()  # 372×200 on a square-only model
    expect(plan).to_contain_text("padded")
    expect(plan).to_contain_text("from 372×200 to 372×372")
    expect(plan).to_be_visible()
    # ... and drawn: the final canvas, the picture centred in its transparent padding.
    final = page.get_by_test_id("edit-plan-canvas")
    expect(final).to_be_visible()
    alpha = final.evaluate("""c => [[186, 10], [186, 186], [186, 360]].map(([x, y]) =>
        c.getContext('2d').getImageData(x, y, 1, 1).data[3])""")
    assert [c.get_attribute("width") for c in (final,)] == ["372"]
    assert alpha == [0, 255, 0]  # padding above, the picture in the middle, padding below
    assert page.evaluate("window.__sent.length") == 0  # all of it before anything is sent
    close(page, errors)


@pytest.mark.browser
def test_small_defects(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    """Defect 8: n=0 and n=2.5, n stuck at 1 after dall-e-3, "auto" quality sticking, a variation
    card showing the source's prompt, "decoded.)." in an upload error."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/images/" in r.url else None)
    page.get_by_test_id("prompt").fill("three green triangles")
    for bad in ("0", "2.5"):
        page.fill("#n", bad)
        page.get_by_test_id("generate").click()
        expect(page.get_by_test_id("error")).to_contain_text("whole number from 1 to 10")
    assert sent == []
    page.fill("#n", "3")
    page.select_option("#model", "dall-e-3")
    expect(page.locator("#n")).to_have_value("1")
    page.select_option("#model", "gpt-image-1")
    expect(page.locator("#n")).to_have_value("3")  # what the user asked for comes back
    expect(page.locator("#quality")).to_have_value("auto")
    page.select_option("#model", "easel-shapes")
    expect(page.locator("#quality")).to_have_value("standard")  # not gpt-image's default
    bad_file = tmp_path / "broken.png"
    bad_file.write_bytes(b"not an image at all")
    page.get_by_test_id("upload").set_input_files(str(bad_file))
    expect(page.get_by_test_id("error")).to_contain_text("could not be read as an image")
    assert ".)." not in (page.get_by_test_id("error").text_content() or "")
    generate(page, "a purple circle above a cyan triangle", seed="11")
    page.locator(".item").first.get_by_test_id("variations").click()
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.locator(".item .prompt").first).not_to_contain_text("purple circle")
    close(page, errors)


DROP_IMAGE = """async ([w, h, kind]) => {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  const g = c.getContext('2d');
  g.fillStyle = '#1e90ff';
  g.fillRect(0, 0, w, h);
  const blob = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
  const dt = new DataTransfer();
  dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
  const event = kind === 'drop'
    ? new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })
    : new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
  document.body.dispatchEvent(event);
}"""

MASKED = """() => {
  const c = document.getElementById('mask-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
  return n / (c.width * c.height);
}"""


@pytest.mark.browser
def test_drop_paste_keyboard_rectangle_and_undo(browser: Browser, stack: Stack) -> None:
    """Drag-and-drop and paste upload; a keyboard way to mark the area; undo/redo for the mask."""
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    page.evaluate(DROP_IMAGE, [96, 64, "drop"])
    expect(page.locator("#canvas-info")).to_contain_text("96×64")
    page.evaluate(DROP_IMAGE, [80, 80, "paste"])
    expect(page.locator("#canvas-info")).to_contain_text("80×80")
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    page.get_by_test_id("mark-rect").locator("summary").press("Enter")
    page.get_by_test_id("rect-mark").focus()
    page.keyboard.press("Enter")
    assert abs(page.evaluate(MASKED) - 0.25) < 0.03  # 50% × 50% of the picture
    page.get_by_test_id("undo-mask").press("Enter")
    assert page.evaluate(MASKED) == 0
    page.get_by_test_id("redo-mask").press("Enter")
    assert abs(page.evaluate(MASKED) - 0.25) < 0.03
    page.get_by_test_id("redo-mask").press("Control+z")  # the keyboard shortcut, anywhere in it
    assert page.evaluate(MASKED) == 0
    page.get_by_test_id("redo-mask").press("Control+Shift+z")
    assert abs(page.evaluate(MASKED) - 0.25) < 0.03
    close(page, errors)


@pytest.mark.browser
def test_reuse_settings_and_dark_mode(browser: Browser, stack: Stack) -> None:
    """Reuse a result's settings (seed included); dark mode follows the system preference."""
    page, errors = open_page(browser, stack.base_url, PHONE, color_scheme="dark",
                             is_mobile=True, has_touch=True)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 21, 26)"
    generate(page, "a yellow square at the top", size="128x128", steps="5", seed="77")
    page.get_by_test_id("prompt").fill("something else")
    page.get_by_test_id("seed").fill("")
    page.select_option("#size", "64x64")
    page.locator(".item").first.get_by_test_id("reuse").click()
    expect(page.get_by_test_id("prompt")).to_have_value("a yellow square at the top")
    expect(page.get_by_test_id("seed")).to_have_value("77")
    expect(page.locator("#size")).to_have_value("128x128")
    expect(page.get_by_test_id("prompt")).to_be_focused()
    expect(page.get_by_test_id("prompt")).to_be_in_viewport()
    close(page, errors)


@pytest.mark.browser
def test_delete_one_result_from_history(browser: Browser, stack: Stack) -> None:
    page, errors = open_page(browser, stack.base_url, LAPTOP_900)
    generate(page, "three green triangles", seed="9", n="2")
    first = page.locator(".item").first
    expect(first).to_contain_text("9")
    first.get_by_test_id("delete").click()
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(page.locator(".item").first).to_be_focused()
    page.reload()
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(page.locator(".item .params").first).to_contain_text("10")  # the second seed kept
    close(page, errors)


@pytest.mark.browser
def test_download_all_and_lightbox(browser: Browser, stack: Stack) -> None:
    page, errors = open_page(browser, stack.base_url, PHONE, is_mobile=True, has_touch=True,
                             accept_downloads=True)
    generate(page, "three green triangles", seed="4", n="2")
    names: list[str] = []
    page.on("download", lambda d: names.append(d.suggested_filename))
    page.get_by_test_id("download-all").click()
    for _ in range(200):  # wait (up to 10 s) for both download events
        if len(names) >= 2:
            break
        page.wait_for_timeout(50)
    page.locator(".item").first.get_by_test_id("result-image").click()
    box = page.get_by_test_id("lightbox")
    expect(box).to_be_visible()
    expect(box.locator("img")).to_have_attribute("alt", re.compile("three green triangles"))
    page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    assert sorted(names) == ["easel-generation-4.png", "easel-generation-5.png"], names
    close(page, errors)
