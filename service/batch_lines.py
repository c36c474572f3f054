"""A batch's JSONL, in and out, in OpenAI's formats; pure functions, no I/O.

Input lines are `{"custom_id", "method": "POST", "url", "body"}`.  A line whose shape is wrong
fails alone (into the error file); only a file with no lines, or more than allowed, fails the
batch as a whole.  Each body is then validated by the live serving code when the line runs.
Output lines are `{"id": "batch_req_...", "custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`; a line that never ran has `"response": null` and an
`error` of `{"code", "message"}`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
LINE_FIELDS = {"custom_id", "method", "url", "body"}
MAX_CUSTOM_ID = 512


@dataclass(frozen=True)
class BatchLine:
    index: int  # 0-based line number in the input file (blank lines count)
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class LineFailure:
    index: int
    custom_id: str | None
    code: str
    message: str


@dataclass(frozen=True)
class ParsedInput:
    lines: list[BatchLine]
    failures: list[LineFailure]


class BatchFileError(Exception):
    """The input file as a whole is unusable: the batch fails with this in its `errors`."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.line = code, message, line

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": None, "line": self.line}


def _check_line(raw: bytes, endpoint: str, max_bytes: int) -> tuple[str, dict[str, Any]]:
    """custom_id and body of one line, or ValueError("code: message")."""
    if len(raw) > max_bytes:
        raise ValueError(f"request_too_large: The line is larger than the {max_bytes} bytes "
                         f"a request to {endpoint} may have.")
    try:
        line = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("invalid_json_line: This line is not valid JSON.") from None
    if not isinstance(line, dict):
        raise ValueError("invalid_json_line: Each line must be a JSON object.")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise ValueError(f"invalid_custom_id: 'custom_id' must be a string of 1 to "
                         f"{MAX_CUSTOM_ID} characters.")
    unknown = sorted(set(line) - LINE_FIELDS)
    if unknown:
        raise ValueError(f"unknown_parameter: Unrecognized field '{unknown[0][:40]}'.")
    if line.get("method") != "POST":
        raise ValueError("invalid_method: 'method' must be \"POST\".")
    if line.get("url") != endpoint:
        raise ValueError(f"invalid_url: 'url' must be the batch's endpoint, {endpoint}.")
    body = line.get("body")
    if not isinstance(body, dict):
        raise ValueError("invalid_body: 'body' must be a JSON object.")
    if body.get("stream") not in (None, False):
        raise ValueError("unsupported_value: 'stream' is not supported in a batch.")
    return custom_id, body


def parse_input(data: bytes, endpoint: str, max_lines: int, max_line_bytes: int) -> ParsedInput:
    """Every line checked on its own; raises BatchFileError only for the whole file."""
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1].strip() == b"":
        raw_lines.pop()  # the newline that ends the last line
    lines: list[BatchLine] = []
    failures: list[LineFailure] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_lines):
        if not raw.strip():
            continue
        if len(lines) + len(failures) >= max_lines:
            raise BatchFileError("too_many_requests", f"The file has more than the {max_lines} "
                                 "requests a batch may have.", index + 1)
        try:
            custom_id, body = _check_line(raw.rstrip(b"\r"), endpoint, max_line_bytes)
        except ValueError as exc:
            code, _, message = str(exc).partition(": ")
            failures.append(LineFailure(index, _custom_id_of(raw), code, message))
            continue
        if custom_id in seen:
            failures.append(LineFailure(index, custom_id, "duplicate_custom_id",
                                        f"The custom_id '{custom_id[:80]}' is used by an "
                                        "earlier line; each must be unique in a batch."))
            continue
        seen.add(custom_id)
        lines.append(BatchLine(index, custom_id, body))
    if not lines and not failures:
        raise BatchFileError("empty_file", "The input file has no requests.")
    return ParsedInput(lines, failures)


def _custom_id_of(raw: bytes) -> str | None:
    """A failed line's custom_id, when it has a readable one (so the client can match it)."""
    try:
        value = json.loads(raw).get("custom_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value[:MAX_CUSTOM_ID] if isinstance(value, str) else None


def request_id(batch_id: str, key: str) -> str:
    """The same id every time a line is written, so writing it again replaces, never adds."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}\0{key}".encode()).hexdigest()[:24]


def answered_line(batch_id: str, custom_id: str, job_id: str, status_code: int,
                  body: Any) -> dict[str, Any]:
    """A line that ran: its status and exactly the body the live call would have answered."""
    return {"id": request_id(batch_id, custom_id), "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": job_id, "body": body},
            "error": None}


def unanswered_line(batch_id: str, key: str, custom_id: str | None, code: str,
                    message: str) -> dict[str, Any]:
    """A line that never ran (bad shape, or the batch expired before it)."""
    return {"id": request_id(batch_id, key), "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def jsonl(entries: list[tuple[int, dict[str, Any]]]) -> bytes:
    """Output lines in the order of the input lines they answer."""
    ordered = sorted(entries, key=lambda e: e[0])
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n"
                    for _, line in ordered)
