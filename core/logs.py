"""Logging setup shared by every process: plain lines, or one JSON object per line.

Every process (gateway, worker, `easel up` supervisor) writes the same JSON schema: the fields
of `BASE_FIELDS` on every line, and those of `FIELDS` when the line is about them (a request,
a job, a process).  docs/deploy.md ("Logs") lists them; tests/core/test_logs.py keeps the two
in step.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from types import TracebackType
from typing import Any

BASE_FIELDS = {
    "ts": "time of the event, ISO 8601 in UTC with milliseconds and zone "
          "(`2026-11-26T10:00:00.123+00:00`)",
    "level": "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`",
    "component": "`gateway`, `worker` or `supervisor` (the process kind)",
    "logger": "the Python logger (`easel.gateway`, `easel.worker`, `easel.reaper`, `rq.worker`...)",
    "msg": "the message, one line",
}
FIELDS = {
    "request_id": "the request's id: the client's `X-Request-Id` or a fresh one (also on the "
                  "worker's job lines)",
    "job_id": "the job's id (the directory of its image URLs)",
    "job_ids": "every job of a batched pipeline call",
    "request_ids": "the requests of those jobs, in the same order",
    "model": "the public model id the client asked for",
    "user": "the request's `user` field (OpenAI's end-user id, for tracing abuse)",
    "pipeline": "the pipeline (loaded weights) that rendered it",
    "endpoint": "the route, e.g. `/v1/images/generations` (never the raw path)",
    "method": "HTTP method",
    "status": "HTTP status (gateway request lines), or a job's status: `finished`, `retried`, "
              "`failed`, `refused`",
    "error_type": "OpenAI error type of an error answer (`invalid_request_error`, "
                  "`server_error`, `rate_limit_exceeded`)",
    "error_code": "OpenAI error code of an error answer (`invalid_value`, `model_not_found`, "
                  "`storage_unavailable`...)",
    "seconds": "wall time: request start to its last byte (gateway), or the job on the worker",
    "render_seconds": "time inside the pipeline call that drew the job's images (a batch's "
                      "whole call for each of its jobs)",
    "images": "images delivered (gateway) or rendered (worker)",
    "stream": "`completed`, `error` or `abandoned`: how a `stream: true` answer ended",
    "first_partial_seconds": "stream start to its first partial image",
    "reason": "why a job was re-run or failed: `error`, `timeout`, `storage`, "
              "`out_of_memory`, `refused`, `worker_lost`, `stranded`",
    "queue": "the RQ queue",
    "worker": "a worker's name",
    "service": "a process the supervisor runs (`redis`, `gateway`, `worker-0`...)",
    "exit_code": "how a supervised process exited",
    "restart_in": "seconds until the supervisor restarts it",
    "exc_type": "exception class of an error line",
    "exc_message": "exception message of an error line",
    "traceback": "the full traceback, as one string field (never loose lines)",
}
TRACEBACK = "\nTraceback (most recent call last):"


def iso_time(created: float) -> str:
    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str = "") -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        data: dict[str, Any] = {"ts": iso_time(record.created), "level": record.levelname,
                                "component": self.component or record.name.split(".")[-1],
                                "logger": record.name, "msg": msg}
        for key in FIELDS:
            if key in record.__dict__ and record.__dict__[key] is not None:
                data[key] = record.__dict__[key]
        head, found, rest = msg.partition(TRACEBACK)
        if found:  # a traceback written into the message (RQ's job errors): a field of its own
            data["msg"] = head.rstrip()
            data["traceback"] = found.lstrip("\n") + rest
            last = rest.strip().splitlines()[-1] if rest.strip() else ""
            exc_type, _, exc_message = last.partition(":")
            data.setdefault("exc_type", exc_type.strip())
            data.setdefault("exc_message", exc_message.strip())
        if record.exc_info and record.exc_info[0] is not None:  # crashes stay diagnosable
            data["exc_type"] = record.exc_info[0].__name__
            data["exc_message"] = str(record.exc_info[1])
            data["traceback"] = self.formatException(record.exc_info)
        data["msg"] = " ".join(str(data["msg"]).split("\n"))  # one line, whatever it quoted
        return json.dumps(data, default=str)


def _uncaught(exc_type: type[BaseException], exc: BaseException,
              tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("easel").critical("uncaught %s: %s", exc_type.__name__, exc,
                                        exc_info=(exc_type, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("easel").critical(
        "uncaught %s in thread %s: %s", args.exc_type.__name__,
        args.thread.name if args.thread else "?", args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def setup_logging(as_json: bool = False, level: int = logging.INFO,
                  component: str = "") -> None:
    """Route every logger (uvicorn's and RQ's too, which then add no handlers of their own)
    through one handler; with JSON, uncaught exceptions become JSON lines as well."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(component) if as_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if as_json:
        sys.excepthook = _uncaught
        threading.excepthook = _uncaught_in_thread
        logging.captureWarnings(True)  # Python warnings (torch, diffusers) as JSON lines too
