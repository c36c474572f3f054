"""The playground page in a real headless Chromium against the real gateway and worker.

Screenshots land in test-artifacts/ (gitignored) for a person to look at.  With
EASEL_UPDATE_DOCS=1, test_docs_screenshot also renders a full-quality page to docs/playground.png.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.auth import hash_key
from tests.conftest import Stack
from tests.support import ROOT, Gateway

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
RENDER_MS = 180_000  # a CPU render shares two cores with whatever else runs
LAPTOP = (1280, 860)
PHONE = (390, 844)

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (make test-deps installs it)",
                allow_module_level=True)

from playwright.sync_api import (  # noqa: E402
    Browser,
    Page,
    Route,
    ViewportSize,
    expect,
)


def open_page(browser: Browser, url: str, viewport: tuple[int, int] = LAPTOP,
              scripts: tuple[str, ...] = (), models: bool = True,
              **kw: object) -> tuple[Page, list[str]]:
    """A fresh context (own sessionStorage) on `url`; the list collects JS errors.

    `scripts` run in the page before its own (after the form recorder); `models`: wait for the
    model list (a keyed server answers it only once a key is entered)."""
    # Reduced motion: the page then scrolls to the editor at once, so boxes hold still.
    size = ViewportSize(width=viewport[0], height=viewport[1])
    ctx = browser.new_context(viewport=size, reduced_motion="reduce",
                              **kw)  # type: ignore[arg-type]
    page = ctx.new_page()
    page.set_default_timeout(RENDER_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Anything but this server would mean the page reaches for the internet.
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:"))
            else errors.append(f"outside request: {r.url}"))
    page.add_init_script(RECORD_FORMS)
    for script in scripts:
        page.add_init_script(script)
    page.goto(url + "/")
    if models:
        expect(page.locator("#model option[value=easel-shapes]")).to_be_attached()
        expect(page.locator("#size option")).not_to_have_count(0)  # its rules are applied
    return page, errors


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    page, errors = open_page(browser, stack.base_url)
    yield page
    page.context.close()
    assert errors == []


def shot(page: Page, name: str, full: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"playground-{name}.png"), full_page=full)


def generate(page: Page, prompt: str, size: str = "64x64", steps: str = "4",
             seed: str = "", n: str = "1") -> None:
    """Fill the form (Advanced: steps, seed) and generate; waits for the gallery to grow."""
    before = page.get_by_test_id("result-image").count()
    page.get_by_test_id("prompt").fill(prompt)
    page.select_option("#size", size)
    page.fill("#n", n)
    if page.locator("details.advanced").get_attribute("open") is None:
        page.click("details.advanced summary")
    page.get_by_test_id("steps").fill(steps)
    page.get_by_test_id("seed").fill(seed)
    page.get_by_test_id("generate").click()
    expect(page.get_by_role("status")).to_contain_text("Generating")  # the waiting state
    expect(page.get_by_test_id("result-image")).to_have_count(before + int(n))
    expect(page.get_by_role("status")).to_be_hidden()


# Chromium does not hand blob-backed multipart bodies to Playwright (post_data is None), so
# the page's fetch is wrapped to record each FormData it sends, files as base64.
RECORD_FORMS = """
window.__sent = [];
const realFetch = window.fetch;
const b64 = (blob) => new Promise((resolve) => {
  const r = new FileReader();
  r.onload = () => resolve(String(r.result).split(',')[1]);
  r.readAsDataURL(blob);
});
window.fetch = async (input, init) => {
  if (init && init.body instanceof FormData) {
    const parts = {};
    for (const [k, v] of init.body.entries()) {
      parts[k] = v instanceof Blob ? { file: await b64(v), type: v.type } : v;
    }
    window.__sent.push({ url: String(input), parts });
  }
  return realFetch(input, init);
};
"""


# Holds back every server-sent event after the partial images until the test calls
# window.__release(), so the pending card can be inspected (and photographed) mid-stream however
# fast the worker renders. The page still reads a real stream from the real server.
HOLD_COMPLETED = """
window.__events = [];
const fetchBeforeHold = window.fetch;
window.fetch = async (input, init) => {
  const res = await fetchBeforeHold(input, init);
  if (!(res.headers.get('Content-Type') || '').startsWith('text/event-stream')) return res;
  const released = new Promise((resolve) => { window.__release = resolve; });
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let buf = '';
  const hold = new TransformStream({
    async transform(chunk, out) {
      buf += dec.decode(chunk, { stream: true });
      let end;
      while ((end = buf.indexOf('\\n\\n')) >= 0) {
        const event = buf.slice(0, end + 2);
        buf = buf.slice(end + 2);
        const name = (event.match(/^event: (.*)$/m) || [])[1];
        if (!name) { out.enqueue(enc.encode(event)); continue; }  // a comment: the queue place
        window.__events.push(name);
        if (!name.endsWith('.partial_image')) await released;
        out.enqueue(enc.encode(event));
      }
    },
    flush(out) { if (buf) out.enqueue(enc.encode(buf)); },
  });
  return new Response(res.body.pipeThrough(hold),
                      { status: res.status, statusText: res.statusText, headers: res.headers });
};
"""


# An <img>'s pixels as a PNG data URL (the CSP keeps fetch() away from blob: URLs).
PIXELS = """i => {
  const c = document.createElement('canvas');
  c.width = i.naturalWidth;
  c.height = i.naturalHeight;
  c.getContext('2d').drawImage(i, 0, 0);
  return c.toDataURL('image/png');
}"""


def sent_form(page: Page, path: str) -> dict[str, bytes]:
    """The parts of the last multipart request the page sent to `path`, by name."""
    page.wait_for_function("p => window.__sent.some(s => s.url.endsWith(p))", arg=path)
    forms = page.evaluate("window.__sent")
    form = [f for f in forms if f["url"].endswith(path)][-1]["parts"]
    return {k: base64.b64decode(v["file"]) if isinstance(v, dict) else v.encode()
            for k, v in form.items()}


def shown_params(page: Page, index: int = 0) -> dict[str, str]:
    """The parameters listed under a gallery item, as {name: value}."""
    return page.locator(".item .params").nth(index).evaluate(
        "dl => Object.fromEntries([...dl.querySelectorAll('div')].map("
        "d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]))")


def natural_size(page: Page, index: int = 0) -> tuple[int, int]:
    img = page.get_by_test_id("result-image").nth(index)
    size = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    return size[0], size[1]


@pytest.mark.browser
def test_generate_shows_result_with_its_parameters(page: Page) -> None:
    shot(page, "empty")
    generate(page, "a red circle to the left of a blue square", seed="1234")
    item = page.locator(".item").first
    assert shown_params(page) == {"kind": "generation", "model": "easel-shapes", "size": "64x64",
                                  "seed": "1234", "steps": "4", "quality": "standard",
                                  "style": "vivid"}
    assert natural_size(page) == (64, 64)
    href = item.get_by_test_id("download").get_attribute("href")
    assert href and href.startswith("blob:")
    shot(page, "generated")
    # Keyboard: an example chip fills the prompt, Ctrl+Enter generates a second image on top.
    page.get_by_role("button", name="three green triangles").click()
    page.get_by_test_id("prompt").press("Control+Enter")
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.locator(".item .prompt").first).to_have_text("three green triangles")


@pytest.mark.browser
def test_paint_mask_and_edit(page: Page) -> None:
    generate(page, "a red circle to the left of a blue square", seed="7")
    page.locator(".item").first.get_by_test_id("edit").click()
    canvas = page.get_by_test_id("mask-canvas")
    expect(canvas).to_be_visible()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] > 100
    # Drag the brush across the left half of the picture.
    page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7, steps=8)
    page.mouse.up()
    page.get_by_test_id("edit-prompt").fill("a green circle to the left of a blue square")
    shot(page, "editor-mask")
    page.get_by_test_id("edit-submit").click()
    parts = sent_form(page, "/v1/images/edits")
    image = Image.open(io.BytesIO(parts["image"]))
    mask = Image.open(io.BytesIO(parts["mask"]))
    assert image.size == mask.size == (64, 64) and mask.mode == "RGBA"
    alpha = mask.getchannel("A")
    assert set(alpha.getdata()) == {0, 255}  # hard mask: edit here, keep there
    assert alpha.getpixel((14, 28)) == 0 and alpha.getpixel((60, 5)) == 255
    assert parts["prompt"] == b"a green circle to the left of a blue square"
    assert parts["steps"] == b"4" and parts["response_format"] == b"b64_json"
    # n = 1 with easel-shapes: the edit streams, with its previews in a pending card.
    assert parts["stream"] == b"true" and parts["partial_images"] == b"3"
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.get_by_test_id("pending")).to_have_count(0)
    assert shown_params(page)["kind"] == "edit"
    assert shown_params(page)["seed"].isdigit()  # picked by the page, as streams carry none
    shot(page, "edited")


@pytest.mark.browser
def test_outpaint_sends_transparent_border_without_mask(page: Page) -> None:
    generate(page, "a yellow square at the top", seed="3")
    page.locator(".item").first.get_by_test_id("edit").click()
    page.get_by_role("button", name="Right ▶").click()
    expect(page.locator("#canvas-info")).to_contain_text("80×64")
    expect(page.locator("#edit-size")).to_have_value("128x128")  # holds the grown canvas
    page.get_by_test_id("edit-submit").click()
    parts = sent_form(page, "/v1/images/edits")
    assert "mask" not in parts  # the transparent border is the area to draw
    assert parts["size"] == b"128x128"
    image = Image.open(io.BytesIO(parts["image"]))
    # Padded to the square result shape (centred) rather than sent as 80x64 and squashed.
    assert image.size == (80, 80) and image.mode == "RGBA"
    alpha = image.getchannel("A")
    assert alpha.getpixel((10, 40)) == 255  # the original picture
    assert alpha.getpixel((75, 40)) == 0  # the extension on the right
    assert alpha.getpixel((40, 3)) == 0 and alpha.getpixel((40, 76)) == 0  # the padding
    expect(page.locator("#canvas-info")).to_contain_text("Padded from 80×64")
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert natural_size(page) == (128, 128)
    shot(page, "outpaint")


@pytest.mark.browser
def test_variations_of_a_result(page: Page) -> None:
    generate(page, "a purple circle above a cyan triangle", seed="11")
    page.locator(".item").first.get_by_test_id("variations").click()
    expect(page.get_by_role("status")).to_contain_text("Making variations")
    parts = sent_form(page, "/v1/images/variations")
    assert Image.open(io.BytesIO(parts["image"])).size == (64, 64)
    assert parts["size"] == b"64x64" and parts["model"] == b"easel-shapes"
    assert parts["steps"] == b"4"
    expect(page.get_by_test_id("result-image")).to_have_count(2)
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert shown_params(page)["kind"] == "variation"
    shot(page, "variation")


@pytest.mark.browser
def test_streaming_shows_previews_before_the_result(browser: Browser, stack: Stack) -> None:
    page, errors = open_page(browser, stack.base_url, scripts=(HOLD_COMPLETED,))
    page.get_by_test_id("prompt").fill("a red circle to the left of a blue square")
    page.select_option("#size", "128x128")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("12")
    page.get_by_test_id("seed").fill("21")
    with page.expect_request("**/v1/images/generations") as sent:
        page.get_by_test_id("generate").click()
    body = sent.value.post_data_json or {}
    assert body["stream"] is True and body["partial_images"] == 3
    assert body["n"] == 1 and body["steps"] == 12 and body["seed"] == 21
    # The completed event is held back: wait until it arrived, so every preview before it is in.
    page.wait_for_function("() => window.__events.some(e => !e.endsWith('.partial_image'))")
    events = page.evaluate("window.__events")
    assert events[-1] == "image_generation.completed", events
    previews = events.count("image_generation.partial_image")
    assert previews >= 1, events
    pending = page.get_by_test_id("pending")
    expect(pending).to_have_attribute("data-partials", str(previews))
    preview = pending.get_by_test_id("partial-image")
    expect(preview).to_be_visible()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=preview.element_handle())
    assert preview.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [128, 128]
    expect(pending).to_contain_text(f"preview {previews}/3")
    expect(pending).to_contain_text("a red circle to the left of a blue square")
    expect(page.get_by_role("status")).to_contain_text(f"preview {previews}/3")
    expect(page.get_by_test_id("result-image")).to_have_count(0)
    preview_pixels = preview.evaluate(PIXELS)
    shot(page, "streaming-preview", full=False)
    # Let the completed event through: the result takes the pending card's place.
    page.evaluate("window.__release()")
    expect(page.get_by_test_id("result-image")).to_have_count(1)
    expect(pending).to_have_count(0)
    expect(page.get_by_role("status")).to_be_hidden()
    expect(page.get_by_test_id("error")).to_be_hidden()
    item = page.locator(".item").first
    expect(item).to_have_attribute("data-partials", str(previews))
    assert natural_size(page) == (128, 128)
    assert shown_params(page) == {"kind": "generation", "model": "easel-shapes",
                                  "size": "128x128", "seed": "21", "steps": "12",
                                  "quality": "standard", "style": "vivid"}
    # The last preview was a stage on the way, not the result itself.
    assert item.get_by_test_id("result-image").evaluate(PIXELS) != preview_pixels
    shot(page, "streamed", full=False)
    page.context.close()
    assert errors == []


@pytest.mark.browser
def test_stream_error_and_waiting_mode(page: Page) -> None:
    """A mid-stream `error` event shows its message; dall-e ids and n > 1 do not stream."""
    message = "The worker stopped while rendering this image; try again."

    def fail_midway(route: Route) -> None:
        real = route.fetch().text()  # the real stream; keep its first preview, then fail
        events = [e for e in real.split("\n\n") if e and not e.startswith(":")]  # no comments
        first = events[0]
        assert first.startswith("event: image_generation.partial_image")
        error = {"error": {"message": message, "type": "server_error", "param": None,
                           "code": "worker_lost"}}
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                      body=f"{first}\n\nevent: error\ndata: {json.dumps(error)}\n\n")

    page.route("**/v1/images/generations", fail_midway)
    page.get_by_test_id("prompt").fill("three green triangles")
    page.select_option("#size", "64x64")
    page.click("details.advanced summary")
    page.get_by_test_id("steps").fill("4")
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("error")).to_have_text(message)
    expect(page.get_by_test_id("pending")).to_have_count(0)
    expect(page.get_by_test_id("result-image")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.get_by_test_id("generate")).to_be_enabled()
    shot(page, "stream-error", full=False)
    page.unroute("**/v1/images/generations")
    # dall-e-2 cannot stream: the request goes out without it and the spinner does the waiting.
    page.select_option("#model", "dall-e-2")
    page.select_option("#size", "256x256")
    with page.expect_request("**/v1/images/generations") as sent:
        generate(page, "three green triangles", size="256x256", seed="2")
    assert "stream" not in (sent.value.post_data_json or {})
    expect(page.get_by_test_id("error")).to_be_hidden()
    # Nor does a batch: n = 2 with easel-shapes waits for both images.
    page.select_option("#model", "easel-shapes")
    with page.expect_request("**/v1/images/generations") as sent:
        generate(page, "three green triangles", seed="2", n="2")
    assert "stream" not in (sent.value.post_data_json or {})
    assert page.locator(".item[data-partials]").count() == 0


@pytest.mark.browser
def test_gpt_image_model(page: Page) -> None:
    """gpt-image ids: their own sizes and qualities, no style, b64_json, and a streamed result."""
    page.select_option("#model", "gpt-image-1")
    options = "s => [...s.options].map(o => o.value)"
    assert page.locator("#size").evaluate(options) == ["auto", "1024x1024", "1536x1024",
                                                       "1024x1536"]
    assert page.locator("#quality").evaluate(options) == ["low", "medium", "high", "auto"]
    expect(page.locator("#quality")).to_have_value("auto")  # the family's default
    expect(page.locator("#style")).to_be_disabled()
    with page.expect_request("**/v1/images/generations") as sent:
        generate(page, "a yellow square at the top", size="1536x1024", seed="8")
    body = sent.value.post_data_json or {}
    assert body["stream"] is True and body["response_format"] == "b64_json"
    assert "style" not in body and body["quality"] == "auto"
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert natural_size(page) == (1536, 1024)
    assert shown_params(page)["model"] == "gpt-image-1"
    # gpt-image offers edits but no variations: the page offers what the model's rules say.
    item = page.locator(".item").first
    expect(item.get_by_test_id("edit")).to_be_visible()
    expect(item.get_by_test_id("variations")).to_be_hidden()
    page.select_option("#model", "dall-e-3")  # neither: variations follow the form's model ...
    expect(item.get_by_test_id("variations")).to_be_hidden()
    # ... while the editor has its own selector, offering only models that edit.
    item.get_by_test_id("edit").click()
    editing = page.get_by_test_id("edit-model").evaluate("s => [...s.options].map(o => o.value)")
    assert "dall-e-3" not in editing and "gpt-image-1" in editing
    expect(page.get_by_test_id("edit-model")).to_have_value("gpt-image-1")  # the image's model
    page.select_option("#model", "easel-shapes")  # both
    expect(item.get_by_test_id("variations")).to_be_visible()


@pytest.mark.browser
def test_choices_come_from_v1_models(browser: Browser, stack: Stack) -> None:
    """The form is built from each /v1/models entry's `easel.rules`, whatever the id: here the
    list is altered on its way to the page, and the page follows it."""
    models = httpx.get(f"{stack.base_url}/v1/models").json()
    rules = {m["id"]: m["easel"]["rules"] for m in models["data"]}
    shapes = rules["easel-shapes"]
    shapes["sizes"] = [s for s in shapes["sizes"] if s != "512x512"]  # a size deleted
    models["data"].append({**models["data"][0], "id": "house-style",  # a custom id
                           "easel": {"rules": rules["dall-e-3"]}})
    page, errors = open_page(browser, stack.base_url, models=False)
    page.route("**/v1/models", lambda route: route.fulfill(json=models))
    page.reload()
    options = "s => [...s.options].map(o => o.value)"
    expect(page.locator("#model option[value=house-style]")).to_be_attached()
    page.select_option("#model", "easel-shapes")
    assert page.locator("#size").evaluate(options) == shapes["sizes"]
    page.select_option("#model", "house-style")  # dall-e-3 rules, not the Easel fallback
    assert page.locator("#size").evaluate(options) == rules["dall-e-3"]["sizes"]
    assert page.locator("#quality").evaluate(options) == rules["dall-e-3"]["qualities"]
    assert page.locator("#n").get_attribute("max") == "1"
    expect(page.locator("#style")).to_be_enabled()
    page.context.close()
    assert errors == []



@pytest.mark.browser
def test_upload_opens_editor(page: Page, tmp_path: Path) -> None:
    path = tmp_path / "upload.png"
    Image.new("RGB", (128, 128), (200, 30, 30)).save(path)
    page.get_by_test_id("upload").set_input_files(str(path))
    expect(page.get_by_test_id("mask-canvas")).to_be_visible()
    expect(page.locator("#canvas-info")).to_contain_text("128×128")
    assert shown_params(page)["kind"] == "upload"
    # Nothing painted, nothing transparent: the page explains instead of sending a no-op edit.
    page.get_by_test_id("edit-prompt").fill("a red square")
    page.get_by_test_id("edit-submit").click()
    expect(page.get_by_test_id("error")).to_contain_text("Paint over the part to change")


@pytest.mark.browser
def test_phone_layout(browser: Browser, stack: Stack) -> None:
    page, errors = open_page(browser, stack.base_url, PHONE, is_mobile=True, has_touch=True,
                             device_scale_factor=2)
    generate(page, "three green triangles", seed="5")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE[0]  # nothing sticks out sideways
    shot(page, "phone")
    page.get_by_test_id("edit").first.click()
    expect(page.get_by_test_id("mask-canvas")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]
    shot(page, "phone-editor", full=False)
    page.context.close()
    assert errors == []


@pytest.fixture(scope="module")
def keyed(stack: Stack) -> Iterator[Gateway]:
    env = dict(stack.env, EASEL_AUTH="required", EASEL_API_KEYS=f"pg:{hash_key('sk-play')}")
    gw = Gateway(env).start()
    yield gw
    gw.stop()


@pytest.mark.browser
def test_wrong_key_shows_the_api_message(browser: Browser, keyed: Gateway) -> None:
    page, errors = open_page(browser, keyed.base_url, models=False)
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("You didn't provide an API key")  # /v1/models on load
    page.get_by_test_id("api-key").fill("sk-wrong-key")
    page.get_by_test_id("prompt").fill("a red circle")
    page.get_by_test_id("generate").click()
    expect(error).to_contain_text("Incorrect API key provided: sk-****-key.")
    expect(error).to_contain_text("Check the API key field")
    assert page.evaluate("sessionStorage.getItem('easel.apiKey')") == "sk-wrong-key"
    assert "sk-wrong-key" not in page.evaluate("JSON.stringify(localStorage)")
    shot(page, "bad-key", full=False)
    # The right key works and goes out as a Bearer token.
    page.get_by_test_id("api-key").fill("sk-play")
    with page.expect_request("**/v1/images/generations") as sent:
        generate(page, "a red circle")
    assert sent.value.headers["authorization"] == "Bearer sk-play"
    expect(error).to_be_hidden()
    page.context.close()
    assert errors == []


@pytest.mark.skipif(os.environ.get("EASEL_UPDATE_DOCS") != "1",
                    reason="set EASEL_UPDATE_DOCS=1 to re-render docs/playground.png")
@pytest.mark.browser
def test_docs_screenshot(browser: Browser, stack: Stack) -> None:
    """Three results and, first, a request still in flight (held at a preview)."""
    page, errors = open_page(browser, stack.base_url, (1280, 800), scripts=(HOLD_COMPLETED,))
    page.get_by_test_id("prompt").fill("a red circle to the left of a blue square")
    page.select_option("#size", "256x256")
    page.fill("#n", "3")
    page.click("details.advanced summary")
    page.get_by_test_id("seed").fill(os.environ.get("EASEL_DOCS_SEED", "13"))
    page.get_by_test_id("generate").click()
    expect(page.get_by_test_id("result-image")).to_have_count(3)
    page.get_by_test_id("prompt").fill("a purple circle above a cyan triangle")
    page.fill("#n", "1")
    page.get_by_test_id("seed").fill("")
    page.get_by_test_id("generate").click()
    page.wait_for_function("() => window.__events.some(e => !e.endsWith('.partial_image'))")
    page.evaluate("document.querySelector('details.advanced').open = false")
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.screenshot(path=str(ROOT / "docs" / "playground.png"))
    page.evaluate("window.__release()")
    expect(page.get_by_test_id("result-image")).to_have_count(4)
    page.context.close()
    assert errors == []


def test_static_files_stay_inside_the_folder(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/")
    assert r.status_code == 200 and 'data-testid="prompt"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert '<script type="module" src="/static/js/main.js">' in r.text
    js = httpx.get(f"{stack.base_url}/static/js/main.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "default-src 'self'" in js.headers["content-security-policy"]
    for bad in ("../pages.py", "..%2Fpages.py", "%2e%2e%2fpages.py", "..%5Cpages.py",
                ".hidden", "missing.js", "index.html%00.js", "js/..%2Fstyle.css",
                "js/%2e%2e%2fstyle.css", "js/..%2F..%2Fpages.py", "js/missing.js",
                "js/.hidden.js", "js/js", "app.js"):
        r = httpx.get(f"{stack.base_url}/static/{bad}")
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] in ("not_found", None), bad
