"""service/dispatch.py and LoRA adapters the workers failed to load (fakes: no Redis, no
worker): refused before admission when no worker can apply them, and a job that failed on a
worker for that reason is answered the same way; both are 503s naming `loras` that neither
background jobs nor OpenAI's SDKs retry."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from core import liveness
from core.errors import OpenAIError
from core.jobs import AdapterUse, Outcome, RenderJob
from core.settings import GatewaySettings
from service.dispatch import Dispatcher, RequestContext
from service.job_runner import WAIT_CODES

WHY = ("adapter bad for pipeline shapes failed to load: Unable to load weights from checkpoint "
       "file for 'bad.safetensors' (SafetensorError: header too small)")


class Queue:
    """service.queue.JobQueue as admission sees it: one live worker, which failed `bad`."""

    knows_server_version = True

    def fleet(self) -> liveness.Fleet:
        return liveness.Fleet({"w": {"queues": ["easel:shapes"], "pipelines": {
            "shapes": {"state": "resident", "failed_adapters": {"bad": WHY}}}}})

    def queue(self, name: str) -> Any:
        return SimpleNamespace(key=f"rq:queue:{name}")

    def enqueue_commands(self, queue_name: str, job: RenderJob) -> list[Any]:
        return []


class Admission:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def acquire(self, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(args[2])  # the job id
        raise OpenAIError(429, "stop here: admitted", code="admitted")


class Waiter:
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    async def wait(self, job_id: str, timeout: float, expected: Any = None) -> Outcome:
        return self.outcome

    def forget(self, job_id: str, expected: Any) -> None:
        pass


def _job(*names: str) -> RenderJob:
    return RenderJob(job_id=f"j-{'-'.join(names)}", model="easel-shapes", pipeline="shapes",
                     width=64, height=64, n=1, seeds=[1], steps=2, guidance=5.0,
                     loras=[AdapterUse(name=n, scale=1.0) for n in names])


def _dispatcher(outcome: Outcome | None = None) -> Dispatcher:
    metrics = SimpleNamespace(waiting=SimpleNamespace(inc=lambda: None, dec=lambda: None))
    return Dispatcher(GatewaySettings(), Queue(), Waiter(outcome or Outcome(  # type: ignore[arg-type]
        job_id="j", status="failed")), metrics, Admission())  # type: ignore[arg-type]


def _refusal(coro: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        asyncio.run(coro)
    return info.value


def _assert_adapter_unavailable(error: OpenAIError) -> None:
    assert (error.status, error.param, error.code) == (503, "loras", "adapter_unavailable")
    assert WHY in error.message
    assert error.headers == {"x-should-retry": "false"}  # not Retry-After: waiting fixes nothing
    assert error.code not in WAIT_CODES  # a background job fails with it instead of waiting


def test_a_request_naming_an_adapter_no_worker_could_load_is_refused_before_admission(
        ) -> None:
    d = _dispatcher()
    error = _refusal(d.admit("easel:shapes", _job("ok", "bad"), RequestContext()))
    _assert_adapter_unavailable(error)
    assert error.message.startswith("The adapter 'bad' in 'loras' is unavailable: ")
    assert d.admission.asked == []  # type: ignore[attr-defined]
    # The pipeline's other adapters, and no adapters at all, go on to admission.
    for job in (_job("ok"), _job()):
        assert _refusal(d.admit("easel:shapes", job, RequestContext())).code == "admitted"
    assert d.admission.asked == ["j-ok", "j-"]  # type: ignore[attr-defined]


def test_a_job_that_failed_on_a_worker_for_its_adapter_says_so() -> None:
    outcome = Outcome(job_id="j", status="failed", error=WHY, error_type="adapter_unavailable")
    error = _refusal(_dispatcher(outcome).outcome_of("easel:shapes", _job("bad"),
                                                     RequestContext(), None))
    _assert_adapter_unavailable(error)
    assert error.message == f"An adapter in 'loras' is unavailable: {WHY}"
