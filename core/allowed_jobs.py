"""Only Easel's own task runs: a job that names any other function is refused, never imported.

RQ resolves a job's function from the dotted path stored in its Redis hash (`Job.func` ->
`import_attribute`), and does the same for the job's success, failure and stopped callbacks; it
also sends the job's webhooks (HTTP requests to any URL).  Whoever can write to Redis could
therefore run `os.system` on a worker.  Easel enqueues exactly one function,
`core.jobs.RENDER_TASK`, with no instance, no callbacks and no webhooks.  `EaselJob` refuses
anything else *before* importing a thing: the job fails (RQ's failed registry, a failed outcome
for a waiting gateway) and nothing it names runs.  Workers use it as their `job_class`; the
reaper and the batching code fetch jobs through it too.
"""

from __future__ import annotations

import logging
from typing import Any

from rq.job import Job

from core.jobs import RENDER_TASK, WEBHOOK_TASK

log = logging.getLogger("easel.jobs")

# Job attributes RQ fills from the hash; each names something RQ would import and call.
CALLBACK_ATTRIBUTES = ("_success_callback_name", "_failure_callback_name",
                       "_stopped_callback_name")


class JobRefused(Exception):
    """A job that names something other than Easel's render task."""


def refusal(job: Job) -> str | None:
    """Why `job` must not run, or None when it is a plain job of its process's one task (the
    job class's `allowed_task`: render workers run RENDER_TASK, `easel webhooks` WEBHOOK_TASK)."""
    task = getattr(job, "allowed_task", RENDER_TASK)
    try:
        name, instance = job.func_name, job.instance
    except Exception:  # RQ's DeserializationError: not even JSON we wrote
        return "its data cannot be decoded"
    if name != task:
        return f"it names {name!r}, and this process runs only {task!r}"
    if instance is not None:
        return "it names a method of an object"
    if any(getattr(job, attr, None) for attr in CALLBACK_ATTRIBUTES):
        return "it carries callbacks"
    if getattr(job, "webhooks", None):
        return "it carries webhooks"
    return None


class EaselJob(Job):
    """RQ's Job, except that it imports nothing but `allowed_task` and sends no RQ webhooks."""

    allowed_task = RENDER_TASK

    @property
    def func(self) -> Any:
        reason = refusal(self)
        if reason is not None:
            self.retries_left = 0  # refused again on every retry: fail it at once
            log.warning("refused job %s: %s", self.id, reason,
                        extra={"job_id": self.id, "status": "refused"})
            raise JobRefused(f"job {self.id} refused: {reason}")
        return super().func

    # Easel never sets callbacks: whatever a job hash names is neither imported nor called
    # (RQ calls the failure callback of a failed or abandoned job, the refused ones included).
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        if self.webhooks:
            log.warning("job %s: not sending %d webhook(s) it carries", self.id,
                        len(self.webhooks), extra={"job_id": self.id})


class DeliveryJob(EaselJob):
    """The job class of `easel webhooks`: it runs webhook deliveries and nothing else."""

    allowed_task = WEBHOOK_TASK
