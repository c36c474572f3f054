"""A function no Easel worker may import or run; tests name it in hand-written jobs.

Importing this module is itself the evidence: `tests.workers.test_allowed_jobs` checks that it
never reaches `sys.modules`, and `record` leaves a marker file should anything call it.
"""

from __future__ import annotations

import os
from pathlib import Path


def record(*args: object) -> None:
    Path(os.environ.get("EASEL_HOSTILE_MARKER", "hostile-task-ran")).write_text("ran")
