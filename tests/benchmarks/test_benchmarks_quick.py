"""The benchmarks' pure parts on tiny inputs: output structure only, never timings (the
benchmarks themselves run with `python -m benchmarks.all`, see docs/benchmarks.md)."""

from __future__ import annotations

from benchmarks import encoding
from benchmarks.batching import calls_in
from benchmarks.report import Goal, Report, percentile, table


def test_encoding_measures_every_codec_and_base64() -> None:
    rows = encoding.measure(encoding.scene_image(32), repeats=1)
    assert [r["name"] for r in rows] == [*encoding.CODECS, "base64 of png zlib 1"]
    for r in rows:
        assert set(r) == {"name", "ms", "bytes"}
        assert r["ms"] >= 0 and r["bytes"] > 0
    png1 = rows[0]["bytes"]
    assert rows[-1]["bytes"] == 4 * ((png1 + 2) // 3)  # base64 of exactly that PNG


def test_worker_log_lines_count_pipeline_calls() -> None:
    log = ("... batched 3 job(s), 3 image(s) in one call\n"
           + "".join(f"... job j{i} done (request r{i}): 1 image(s) in 0.10s\n" for i in range(5)))
    assert calls_in(log) == (3, 5)  # one batch of 3 plus 2 lone jobs, 5 jobs in all


def test_report_and_helpers() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    lines = table(["a", "bb"], [[1, 2.5]])
    assert len(lines) == 2 and "2.500" in lines[1]
    text = Report("t", lines, [Goal("g", 1.2, "<= 1.10", False)], ["n"]).text()
    assert "NOT MET" in text and text.startswith("== t ==")
