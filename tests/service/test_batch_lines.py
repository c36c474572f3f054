"""A batch's JSONL: every line checked alone, the whole file refused only when unusable, and
output lines in OpenAI's shape, in input order, with ids that do not change on a rewrite."""

from __future__ import annotations

import json

import pytest

from service.batch_lines import (
    BatchFileError,
    answered_line,
    jsonl,
    parse_input,
    request_id,
    unanswered_line,
)

GEN = "/v1/images/generations"


def _line(custom_id: object = "a", **over: object) -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": GEN, "body": {"prompt": "x"}}
    line.update(over)
    return json.dumps(line).encode()


def test_good_lines_parse_in_order_and_blank_lines_are_skipped() -> None:
    data = b"\n".join([_line("a"), b"", _line("b"), b"   "]) + b"\n"
    parsed = parse_input(data, GEN, 10, 10_000)
    assert [(x.index, x.custom_id, x.body) for x in parsed.lines] == [
        (0, "a", {"prompt": "x"}), (2, "b", {"prompt": "x"})]
    assert parsed.failures == []


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", "invalid_json_line"),
    (b"[1, 2]", "invalid_json_line"),
    (_line(None), "invalid_custom_id"),
    (_line(""), "invalid_custom_id"),
    (_line(7), "invalid_custom_id"),
    (_line("c", method="GET"), "invalid_method"),
    (_line("c", url="/v1/images/edits"), "invalid_url"),
    (_line("c", body="prompt"), "invalid_body"),
    (_line("c", body={"prompt": "x", "stream": True}), "unsupported_value"),
    (_line("c", extra=1), "unknown_parameter"),
    (_line("c", body={"prompt": "x" * 500}), "request_too_large"),
    (b"\xff\xfe", "invalid_json_line"),
])
def test_a_bad_line_fails_alone(raw: bytes, code: str) -> None:
    data = b"\n".join([_line("a"), raw, _line("b")])
    parsed = parse_input(data, GEN, 10, 400)
    assert [x.custom_id for x in parsed.lines] == ["a", "b"]
    assert [(f.index, f.code) for f in parsed.failures] == [(1, code)]
    if raw.startswith(b'{"custom_id": "c"'):
        assert parsed.failures[0].custom_id == "c"  # the client can still match it


def test_a_repeated_custom_id_fails_and_the_first_runs() -> None:
    parsed = parse_input(b"\n".join([_line("a"), _line("a")]), GEN, 10, 10_000)
    assert [x.index for x in parsed.lines] == [0]
    assert [(f.index, f.custom_id, f.code) for f in parsed.failures] == [
        (1, "a", "duplicate_custom_id")]


def test_an_empty_or_oversized_file_fails_as_a_whole() -> None:
    with pytest.raises(BatchFileError) as empty:
        parse_input(b"\n \n", GEN, 10, 10_000)
    assert empty.value.code == "empty_file"
    with pytest.raises(BatchFileError) as many:
        parse_input(b"\n".join(_line(str(i)) for i in range(4)), GEN, 3, 10_000)
    assert (many.value.code, many.value.line) == ("too_many_requests", 4)


def test_output_lines_have_openai_shape_stable_ids_and_input_order() -> None:
    done = answered_line("batch_1", "a", "job-1", 200, {"data": [1]})
    assert done == {"id": request_id("batch_1", "a"), "custom_id": "a",
                    "response": {"status_code": 200, "request_id": "job-1",
                                 "body": {"data": [1]}}, "error": None}
    assert done["id"].startswith("batch_req_") and done["id"] == request_id("batch_1", "a")
    assert request_id("batch_2", "a") != done["id"]
    failed = unanswered_line("batch_1", "l:3", None, "invalid_json_line", "bad")
    assert failed["response"] is None and failed["error"] == {"code": "invalid_json_line",
                                                              "message": "bad"}
    out = jsonl([(5, {"n": 5}), (1, {"n": 1})]).decode().splitlines()
    assert [json.loads(x)["n"] for x in out] == [1, 5]
