"""Multi-image edits end to end: a FLUX.2-shaped pipeline with `reference_images` draws from
every image the official SDK sends; the rules on /v1/models say how many it takes."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.models import flux2_tiny
from tests.support import Gateway, RedisServer, base_env, start_worker, stop, wait_ready

CATALOG = """
[pipelines.flux2]
path = "./flux2"
native_size = 64
steps = 2
guidance = 1.0
schedulers = []
reference_images = 2

[[models]]
id = "flux2-edit"
pipeline = "flux2"
family = "easel"
"""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("references")
    flux2_tiny.save(root)
    (root / "models.toml").write_text(CATALOG)
    server = RedisServer(root / "redis").start()
    env = base_env(server.url, root, EASEL_MODELS_FILE=str(root / "models.toml"))
    worker = start_worker(env, "flux2")
    gateway = Gateway(env, log=root / "gateway.log").start()
    try:
        wait_ready(gateway.base_url, timeout=120)
        yield gateway.base_url
    finally:
        gateway.stop()
        stop(worker)
        server.stop()


def _png(rgb: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(out, "PNG")
    return out.getvalue()


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def _pixels(response: object) -> np.ndarray:
    b64 = response.data[0].b64_json  # type: ignore[attr-defined]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), np.int16)


def test_every_image_is_used(base_url: str) -> None:
    client = _client(base_url)
    red, blue = _png((200, 20, 20)), _png((20, 20, 200))

    def edit(images: list[bytes]) -> np.ndarray:
        files = [(f"{i}.png", data, "image/png") for i, data in enumerate(images)]
        return _pixels(client.images.edit(model="flux2-edit", image=files, prompt="a cat",
                                          size="64x64", response_format="b64_json",
                                          extra_body={"seed": 7}))

    both = edit([red, blue])
    assert np.array_equal(both, edit([red, blue]))  # same seed, same images: same picture
    assert not np.array_equal(both, edit([red, red]))  # only the second image differs


def test_json_edits_fetch_every_image(base_url: str) -> None:
    urls = [{"image_url": "data:image/png;base64," + base64.b64encode(_png(c)).decode()}
            for c in ((200, 20, 20), (20, 20, 200))]
    r = httpx.post(f"{base_url}/v1/images/edits", timeout=120,
                   json={"model": "flux2-edit", "prompt": "a cat", "size": "64x64",
                         "response_format": "b64_json", "images": urls})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["b64_json"]


def test_the_rules_say_how_many_images_and_more_are_refused(base_url: str) -> None:
    models = httpx.get(f"{base_url}/v1/models", timeout=10).json()["data"]
    (entry,) = [m for m in models if m["id"] == "flux2-edit"]
    assert entry["easel"]["rules"]["max_images"] == 2
    files = [(f"{i}.png", _png((i, i, i)), "image/png") for i in range(3)]
    with pytest.raises(openai.BadRequestError) as err:
        _client(base_url).images.edit(model="flux2-edit", image=files, prompt="a cat")
    assert err.value.body["code"] == "too_many_images"  # type: ignore[index]
    assert err.value.body["param"] == "image"  # type: ignore[index]


def test_strength_is_refused_for_reference_pipelines(base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _client(base_url).images.edit(model="flux2-edit", image=("a.png", _png((1, 2, 3))),
                                      prompt="a cat", extra_body={"strength": 0.5})
    assert err.value.body["param"] == "strength"  # type: ignore[index]


