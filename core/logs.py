"""Logging setup shared by every process: plain lines, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for key in ("request_id", "job_id", "model", "status", "seconds"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:  # a crash must stay diagnosable in JSON logs too
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(as_json: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
