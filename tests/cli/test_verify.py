"""`easel verify`: reports both provenance layers, and says which one a stripped file kept."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from cli.certs import init
from cli.main import main
from workers import watermark
from workers.encoding import encode
from workers.provenance import GENERATED, Origin, Signer


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["verify", *args])
    return int(exit_.value.code or 0), capsys.readouterr().out


def test_verify_reports_the_manifest_and_the_watermark(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = init(tmp_path / "certs")
    marked = watermark.embed(Image.new("RGB", (128, 128), (240, 240, 240)), "easel")
    signed = Signer(certs.chain, certs.key).sign(encode(marked, "png"), "png",
                                                 Origin("generate", "dall-e-3"))
    full, stripped, plain = tmp_path / "full.png", tmp_path / "stripped.png", tmp_path / "p.png"
    full.write_bytes(signed)
    Image.open(io.BytesIO(signed)).save(stripped, "PNG")  # metadata gone, pixels kept
    Image.new("RGB", (128, 128), (240, 240, 240)).save(plain, "PNG")

    code, out = _verify(capsys, str(full), str(stripped), "--trust", str(certs.root))
    assert code == 0
    first, second = out.split(str(stripped))
    assert "C2PA: Trusted: trainedAlgorithmicMedia; models dall-e-3" in first
    assert "watermark: FOUND" in first
    assert "no manifest" in second and "watermark: FOUND" in second

    code, out = _verify(capsys, str(full), "--json")  # no root: intact but not trusted
    report = json.loads(out)[str(full)]
    assert report["c2pa"]["validation_state"] == "Valid"
    assert report["c2pa"]["digital_source_types"] == [GENERATED]
    assert report["c2pa"]["claim_generator"][0].startswith("Easel")
    assert report["watermark"]["found"] is True

    code, out = _verify(capsys, str(plain))
    assert code == 1 and "no manifest" in out and "watermark: not found" in out
    code, out = _verify(capsys, str(full), "--watermark-key", "someone else's")
    assert code == 0 and "watermark: not found" in out  # the manifest alone still holds
    code, out = _verify(capsys, str(tmp_path / "missing.png"))
    assert code == 1 and "error" in out
