"""Issue 13's done-when, on the path users take: a fresh `easel up` (what `make run` starts)
signs by default, and images fetched by URL or as b64_json carry a C2PA manifest with the right
digital source type and the invisible watermark, as c2pa's Reader and `easel verify` see them."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import c2pa
import openai
from PIL import Image

from tests.conftest import FAST
from tests.support import ROOT, base_env, free_port, stop, wait_ready
from workers.provenance import COMPOSITE, GENERATED, read_credentials


def _source_types(data: bytes, mime: str) -> list[str]:
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        manifest = reader.get_active_manifest()
    assert manifest is not None
    return [a["digitalSourceType"] for assertion in manifest["assertions"]
            if assertion["label"].startswith("c2pa.actions")
            for a in assertion["data"]["actions"] if "digitalSourceType" in a]


def _verify(paths: list[Path], root: Path) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-m", "cli", "verify", "--json", "--trust", str(root),
                          *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_a_fresh_easel_up_signs_and_watermarks_what_the_api_returns(tmp_path: Path) -> None:
    env = base_env("", tmp_path)
    del env["EASEL_REDIS_URL"]  # easel up starts its own Redis, as under `make run`
    data_dir = tmp_path / "easel"
    port = free_port()
    up = subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port),
                           "--data-dir", str(data_dir)], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        root = data_dir / "certs" / "root.pem"
        assert root.is_file() and (data_dir / "certs" / "signer.key").stat().st_mode & 0o077 == 0
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=120)
        by_url = client.images.generate(model="dall-e-2", prompt="a red circle", size="256x256",
                                        response_format="url", extra_body=FAST)
        assert by_url.data[0].url is not None
        with urllib.request.urlopen(by_url.data[0].url, timeout=30) as r:
            url_png = r.read()
        by_b64 = client.images.generate(model="gpt-image-1", prompt="a blue square",
                                        output_format="jpeg", extra_body=FAST)
        b64_jpeg = base64.b64decode(by_b64.data[0].b64_json or "")
        source = Image.open(io.BytesIO(url_png))
        edited = client.images.edit(model="easel-shapes", image=_png(source),
                                    prompt="a green triangle", response_format="b64_json",
                                    extra_body=FAST)
        edit_png = base64.b64decode(edited.data[0].b64_json or "")

        events = list(client.images.generate(model="gpt-image-1", prompt="a red circle",
                                             stream=True, partial_images=1, extra_body=FAST))
        partial, final = (base64.b64decode(e.b64_json) for e in (events[0], events[-1]))
        assert events[0].type.endswith("partial_image")
        assert read_credentials(partial) is None  # a draft: neither signed nor marked
        assert _source_types(final, "image/png") == [GENERATED]

        assert _source_types(url_png, "image/png") == [GENERATED]
        assert _source_types(b64_jpeg, "image/jpeg") == [GENERATED]
        assert _source_types(edit_png, "image/png") == [COMPOSITE]

        files = {"url.png": url_png, "b64.jpeg": b64_jpeg, "edit.png": edit_png}
        for name, content in files.items():
            (tmp_path / name).write_bytes(content)
        reports = _verify([tmp_path / name for name in files], root)
        for name, report in reports.items():
            assert report["watermark"]["found"], (name, report)
            assert report["c2pa"]["validation_state"] == "Trusted", (name, report)
            assert report["c2pa"]["failures"] == []
        assert reports[str(tmp_path / "url.png")]["c2pa"]["models"] == ["dall-e-2"]
        assert reports[str(tmp_path / "edit.png")]["c2pa"]["models"] == ["easel-shapes"]
    finally:
        stop(up, timeout=60)
