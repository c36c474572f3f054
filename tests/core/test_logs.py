"""One JSON log schema for every process (issue 18): ISO times with ms and zone, tracebacks as
fields, supervisor and crash lines as JSON too, and the documented field list in step."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from core import logs
from core.logs import JsonFormatter
from tests.support import ROOT

ISO_MS_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def record(msg: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("rq.worker").makeRecord("rq.worker", logging.ERROR, __file__, 1, msg,
                                                    args, exc_info)  # type: ignore[arg-type]
    rec.__dict__.update(extra)
    return rec


def test_a_line_has_an_iso_time_with_milliseconds_and_zone_and_the_known_fields() -> None:
    line = json.loads(JsonFormatter("worker").format(record(
        "job %s done", "j1", job_id="j1", render_seconds=3.6, job_ids=["a", "b"],
        arguments=["the prompt"])))
    assert ISO_MS_ZONE.match(line["ts"]), line["ts"]
    assert line["component"] == "worker" and line["logger"] == "rq.worker"
    assert line["job_id"] == "j1" and line["render_seconds"] == 3.6
    assert line["job_ids"] == ["a", "b"]
    assert "arguments" not in line  # RQ's extras (the job's arguments: the prompt) stay out
    assert set(line) <= set(logs.BASE_FIELDS) | set(logs.FIELDS)


def test_a_traceback_is_a_field_never_loose_lines() -> None:
    """RQ writes a failed job's traceback into its message."""
    rq_text = ("Worker w: job j1: exception raised while executing (render)\n"
               "Traceback (most recent call last):\n  File \"x.py\", line 1, in render\n"
               "RuntimeError: boom")
    line = json.loads(JsonFormatter().format(record("%s", rq_text, job_id="j1")))
    assert line["msg"] == "Worker w: job j1: exception raised while executing (render)"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert line["exc_type"] == "RuntimeError" and line["exc_message"] == "boom"
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        text = JsonFormatter().format(record("failed:\nsecond line", exc_info=sys.exc_info()))
    assert "\n" not in text
    line = json.loads(text)
    assert line["msg"] == "failed: second line"
    assert line["exc_type"] == "ValueError" and "raise ValueError" in line["traceback"]


def run_json(code: str) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT),
                                                      "EASEL_LOG_JSON": "true"})
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every line is JSON, or this fails


def test_uncaught_exceptions_and_supervisor_lines_are_json_too() -> None:
    crash = run_json("from core.logs import setup_logging\n"
                     "setup_logging(True, component='worker')\n"
                     "raise RuntimeError('boom')")
    assert crash[-1]["exc_type"] == "RuntimeError" and crash[-1]["level"] == "CRITICAL"
    assert crash[-1]["component"] == "worker" and "traceback" in crash[-1]
    say = run_json("from core.logs import setup_logging\n"
                   "from cli import stack\n"
                   "setup_logging(True, component='supervisor')\n"
                   "stack.say('worker-0 exited with 1', 30, service='worker-0', exit_code=1, "
                   "restart_in=0.5)")
    assert say == [{**say[0], "component": "supervisor", "level": "WARNING",
                    "msg": "worker-0 exited with 1", "service": "worker-0", "exit_code": 1,
                    "restart_in": 0.5}]


def test_every_log_field_is_documented_in_deploy_md() -> None:
    text = (Path(ROOT) / "docs/deploy.md").read_text()
    section = text[text.index("#### Log fields"):]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(logs.BASE_FIELDS) | set(logs.FIELDS)


def test_the_user_field_goes_on_the_requests_log_line() -> None:
    """`user` was accepted and dropped; OpenAI uses it to trace abuse to an end user."""
    from types import SimpleNamespace

    from service.observe import request_fields

    request = SimpleNamespace(method="POST", state=SimpleNamespace(
        request_id="r1", ctx=SimpleNamespace(model="dall-e-2", job_id="j1", user="end-user-42",
                                             images=1, stream=None)))
    fields = request_fields(request, "/v1/images/generations", 200, 0.5, None)  # type: ignore[arg-type]
    assert fields["user"] == "end-user-42"
