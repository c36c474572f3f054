"""benchmarks.signing's structure on a tiny image: every format measured, never a timing."""

from __future__ import annotations

from pathlib import Path

from benchmarks import signing
from benchmarks.encoding import scene_image
from cli.certs import init
from workers.provenance import Signer


def test_signing_benchmark_measures_every_format(tmp_path: Path) -> None:
    certs = init(tmp_path / "certs")
    rows = signing.measure(scene_image(32), Signer(certs.chain, certs.key), repeats=1)
    assert [r["format"] for r in rows] == list(signing.FORMATS)
    for r in rows:
        assert r["sign_ms"] >= 0 and r["watermark_ms"] >= 0 and r["encode_ms"] >= 0
        assert 1000 < r["manifest_bytes"] < 20000  # the manifest really is embedded
