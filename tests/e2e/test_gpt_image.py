"""gpt-image ids: output formats, transparency, usage, and streaming with partial images."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.conftest import Stack


def _image(b64: str | None) -> Image.Image:
    assert b64
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini"])
def test_gpt_image_response_fields(stack: Stack, model: str) -> None:
    r = stack.client().images.generate(model=model, prompt="a blue circle", size="1024x1024",
                                       quality="low", extra_body={"steps": 4})
    assert r.data and r.data[0].b64_json and r.data[0].url is None  # always base64
    assert (r.output_format, r.quality, r.size, r.background) == ("png", "low", "1024x1024",
                                                                  "opaque")
    assert r.usage and r.usage.input_tokens == 3 and r.usage.output_tokens == 4
    assert r.usage.total_tokens == 7


def test_jpeg_and_webp_with_compression(stack: Stack) -> None:
    c = stack.client()
    for fmt, pil in (("jpeg", "JPEG"), ("webp", "WEBP")):
        r = c.images.generate(model="gpt-image-1", prompt="a red square", output_format=fmt,
                              output_compression=40, extra_body={"steps": 4})
        assert _image(r.data[0].b64_json).format == pil and r.output_format == fmt


def test_transparent_background_is_honoured_for_png(stack: Stack) -> None:
    r = stack.client().images.generate(model="gpt-image-1", prompt="a green circle",
                                       background="transparent", size="1024x1024",
                                       extra_body={"steps": 6, "seed": 5})
    image = _image(r.data[0].b64_json)
    assert image.mode == "RGBA" and r.background == "transparent"
    alpha = image.getchannel("A")
    assert alpha.getpixel((2, 2)) < 40  # the white canvas became transparent
    assert alpha.getextrema()[1] == 255  # the shape stays opaque


@pytest.mark.parametrize("body,param", [
    ({"model": "gpt-image-1", "background": "transparent", "output_format": "jpeg"},
     "background"),
    ({"model": "gpt-image-1", "response_format": "url"}, "response_format"),
    ({"model": "dall-e-2", "output_format": "webp"}, "output_format"),
    ({"model": "dall-e-2", "stream": True}, "stream"),
    ({"model": "gpt-image-1", "stream": True, "n": 2}, "n"),
    ({"model": "gpt-image-1", "stream": "yes"}, "stream"),
    ({"model": "gpt-image-1", "partial_images": 4, "stream": True}, "partial_images"),
    ({"model": "gpt-image-1", "size": "256x256"}, "size"),
    ({"model": "gpt-image-1", "quality": "hd"}, "quality"),
])
def test_gpt_rules_are_enforced(stack: Stack, body: dict, param: str) -> None:
    r = httpx.post(f"{stack.base_url}/v1/images/generations", json={"prompt": "x", **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_streaming_partials_then_completed(stack: Stack) -> None:
    events = list(stack.client().images.generate(
        model="gpt-image-1", prompt="three cyan squares", stream=True, partial_images=2,
        size="1024x1024", extra_body={"steps": 8}))
    kinds = [e.type for e in events]
    assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    final = events[-1]
    assert _image(final.b64_json).size == (1024, 1024)
    # 8 steps x 2 candidates (auto quality: best of 2 on the shapes pipeline's scorer)
    assert final.usage.output_tokens == 16  # type: ignore[union-attr]
    # the previews are real images of the same size, from earlier denoising steps
    first = _image(events[0].b64_json)
    assert first.size == (1024, 1024) and first.tobytes() != _image(final.b64_json).tobytes()


def test_streaming_without_partials_sends_one_event(stack: Stack) -> None:
    events = list(stack.client().images.generate(model="gpt-image-1", prompt="a red circle",
                                                 stream=True, extra_body={"steps": 4}))
    assert [e.type for e in events] == ["image_generation.completed"]


def test_edit_streaming_events(stack: Stack) -> None:
    canvas = Image.new("RGBA", (256, 256), (255, 255, 255, 255))
    canvas.paste((0, 0, 0, 0), (128, 0, 256, 256))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    events = list(stack.client().images.edit(
        model="gpt-image-1", image=buf.getvalue(), prompt="a blue square on the right",
        stream=True, partial_images=1, extra_body={"steps": 6}))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]


def test_streaming_errors_before_start_are_json(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError):
        list(stack.client().images.generate(model="gpt-image-1", prompt="", stream=True))


def test_edit_streaming_without_a_mask_sends_partials(stack: Stack) -> None:
    """An opaque image and no mask: image-to-image on the whole picture, previewed too."""
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (250, 250, 250)).save(buf, "PNG")
    events = list(stack.client().images.edit(
        model="gpt-image-1", image=buf.getvalue(), prompt="a red circle", stream=True,
        partial_images=2, extra_body={"steps": 8}))
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]


@pytest.mark.parametrize("model", ["gpt-image-2", "chatgpt-image-latest"])
def test_gpt_image_2_renders_any_size_in_multiples_of_16(stack: Stack, model: str) -> None:
    r = stack.client().images.generate(model=model, prompt="a red circle", size="1920x1088",  # type: ignore[arg-type]
                                       extra_body={"steps": 4})
    assert _image(r.data[0].b64_json).size == (1920, 1088) and r.size == "1920x1088"


@pytest.mark.parametrize("body,param", [
    ({"size": "1920x1080"}, "size"),  # 1080 is not a multiple of 16
    ({"size": "4096x2048"}, "size"),  # longer than 3840
    ({"size": "3200x1024"}, "size"),  # wider than 3:1
    ({"size": "1920x1088px"}, "size"),
    ({"background": "transparent"}, "background"),
    ({"quality": "hd"}, "quality"),
])
def test_gpt_image_2_rules(stack: Stack, body: dict, param: str) -> None:
    r = httpx.post(f"{stack.base_url}/v1/images/generations",
                   json={"prompt": "x", "model": "gpt-image-2", **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_quality_is_denoising_work(stack: Stack) -> None:
    """On the shapes pipeline, which has a scorer, quality is the number of candidates ranked
    for each image: low 1, medium (= auto) 2, high 4, each of the pipeline's steps; usage
    counts every step of every candidate (docs/api.md)."""
    from core.catalog import load_catalog

    steps = load_catalog(None).pipelines["shapes"].steps
    c = stack.client()
    tokens = {q: c.images.generate(model="gpt-image-1", prompt="a red circle", quality=q,  # type: ignore[arg-type]
                                   size="1024x1024").usage.output_tokens  # type: ignore[union-attr]
              for q in ("low", "medium", "auto", "high")}
    assert tokens == {"low": steps, "medium": 2 * steps, "auto": 2 * steps, "high": 4 * steps}


def test_input_fidelity_keeps_more_of_the_source(stack: Stack) -> None:
    """An edit without a mask redraws the whole image: high fidelity keeps more of it."""
    import numpy as np

    from models.shapes.world import Obj, Scene, render

    source = render(Scene("a red circle", "single", (Obj("red", "circle", 0.5, 0.5, 0.4),)), 256)
    buf = io.BytesIO()
    source.save(buf, "PNG")

    def distance(fidelity: str) -> float:
        r = stack.client().images.edit(model="gpt-image-1", image=buf.getvalue(),
                                       prompt="three blue squares", size="1024x1024",
                                       input_fidelity=fidelity,  # type: ignore[arg-type]
                                       extra_body={"seed": 11, "steps": 12})
        out = _image(r.data[0].b64_json).convert("RGB").resize((256, 256))
        return float(np.abs(np.asarray(out, np.float32) - np.asarray(source, np.float32)).mean())

    assert distance("high") < distance("low")
