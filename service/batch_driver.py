"""The batch driver: every gateway runs one; each batch is driven by one of them at a time.

A batch's driver holds a per-batch lease in Redis, renewed on every pass; when its gateway
dies, another (or the same one restarted) takes the batch over once the lease lapses, and
carries on from what Redis says: the input file is parsed again (the same lines), lines already
handed to the background runner are found again by their deterministic job ids, and each line's
answer is written once (service.batches.BatchStore.record).  Lines go to the runner at priority
`batch`, at most `batch_max_in_flight` of a batch at a time, so live requests go first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from starlette.concurrency import run_in_threadpool

from core.errors import OpenAIError
from core.settings import GatewaySettings
from service.batch_lines import (
    BatchFileError,
    BatchLine,
    answered_line,
    jsonl,
    parse_input,
    unanswered_line,
)
from service.batches import ACTIVE, FINAL, BatchStore, batch_key
from service.files import FileStore

log = logging.getLogger("easel.batches")
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
# KEYS[1] the lease; ARGV: this driver's token, the lease in ms.  Taken when free, renewed
# when ours.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
EVENTS = {"completed": "batch.completed", "failed": "batch.failed",
          "cancelled": "batch.cancelled", "expired": "batch.expired"}


def line_job_id(batch_id: str, index: int) -> str:
    """The same id for a line however often it is handed over: the runner keeps one job."""
    return f"{batch_id}-{index}"


def output_file_ids(batch_id: str) -> tuple[str, str]:
    tail = batch_id.removeprefix("batch_")
    return f"file-out-{tail}", f"file-err-{tail}"


class BatchDriver:
    def __init__(self, redis: Redis, store: BatchStore, files: FileStore,
                 settings: GatewaySettings, runner: Callable[[], Any],
                 notify: Notify | None = None) -> None:
        self.redis = redis
        self.store = store
        self.files = files
        self.settings = settings
        self.runner = runner  # app.state.background, looked up when needed
        self.notify = notify
        self.token = secrets.token_hex(8)  # this driver's name on the leases it holds
        self._lease = redis.register_script(_LEASE)
        self._lines: dict[str, list[BatchLine]] = {}  # parsed input of the batches we hold

    async def run_forever(self) -> None:
        while True:
            try:
                await self.pass_once()
            except Exception as exc:  # Redis or storage away: the next pass tries again
                log.warning("batch driver pass failed: %s", exc)
            await asyncio.sleep(self.settings.batch_poll_seconds)

    async def pass_once(self) -> None:
        ms = str(int(self.settings.batch_lease_seconds * 1000))
        for raw in await self.redis.smembers(ACTIVE):
            batch_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if await self._lease(keys=[batch_key(batch_id, "lease")], args=[self.token, ms]):
                await self.step(batch_id)
            else:
                self._lines.pop(batch_id, None)  # another driver has it now

    async def step(self, batch_id: str) -> None:
        fields = await self.store.fields(batch_id)
        if fields is None or fields["status"] in FINAL:
            await self.redis.srem(ACTIVE, batch_id)
            self._lines.pop(batch_id, None)
            return
        if fields["status"] == "validating":
            await self._validate(fields)
            return
        lines = await self._lines_of(fields)
        if lines is None:
            return
        status = fields["status"]
        expired = status == "in_progress" and time.time() >= int(fields["expires_at"])
        stopping = status == "cancelling" or expired
        pending = await self._collect(batch_id, lines, stopping)
        if not stopping and status == "in_progress":
            pending = await self._hand_over(batch_id, lines, pending)
        cursor = int(await self.redis.get(batch_key(batch_id, "next")) or 0)
        if pending == 0 and (stopping or status == "finalizing" or cursor >= len(lines)):
            final = ("cancelled" if status == "cancelling" else "expired" if expired
                     else "completed")
            await self._finish(fields, lines, final)

    async def _validate(self, fields: dict[str, str]) -> None:
        batch_id = fields["id"]
        endpoint = fields["endpoint"]
        most = (self.settings.max_body_bytes if endpoint.endswith("generations")
                else self.settings.max_upload_bytes)
        try:
            data = await self.files.read(fields["owner"], fields["input_file_id"])
            parsed = await run_in_threadpool(parse_input, data, endpoint,
                                             self.settings.batch_max_lines, most)
        except (OpenAIError, BatchFileError) as exc:
            error = (exc.as_error() if isinstance(exc, BatchFileError) else
                     {"code": exc.code or "invalid_file", "message": exc.message,
                      "param": "input_file_id", "line": None})
            if await self.store.move(batch_id, ("validating",), "failed",
                                     errors=json.dumps([error])):
                await self._announce("failed", batch_id)
            return
        for failure in parsed.failures:
            line = unanswered_line(batch_id, f"l:{failure.index}", failure.custom_id,
                                   failure.code, failure.message)
            await self.store.record(batch_id, False, f"l:{failure.index}", failure.index, line)
        self._lines[batch_id] = parsed.lines
        await self.store.move(batch_id, ("validating",), "in_progress",
                              total=len(parsed.lines) + len(parsed.failures))

    async def _lines_of(self, fields: dict[str, str]) -> list[BatchLine] | None:
        """The batch's runnable lines: parsed once per driver that holds the batch."""
        batch_id = fields["id"]
        if batch_id not in self._lines:
            endpoint = fields["endpoint"]
            try:
                data = await self.files.read(fields["owner"], fields["input_file_id"])
            except OpenAIError as exc:  # deleted while the batch ran: nothing left to run
                error = {"code": "file_not_found", "message": exc.message,
                         "param": "input_file_id", "line": None}
                if await self.store.move(batch_id, ("in_progress", "cancelling", "finalizing"),
                                         "failed", errors=json.dumps([error])):
                    await self._announce("failed", batch_id)
                return None
            parsed = await run_in_threadpool(parse_input, data, endpoint,
                                             self.settings.batch_max_lines,
                                             1 << 62)  # sizes were checked when validating
            self._lines[batch_id] = parsed.lines
        return self._lines[batch_id]

    async def _collect(self, batch_id: str, lines: list[BatchLine], stopping: bool) -> int:
        """Write the answers of finished lines; cancel queued ones when stopping.  Returns how
        many lines are still with the runner."""
        runner = self.runner()
        by_index = {line.index: line for line in lines}
        pending = 0
        for raw in await self.redis.smembers(batch_key(batch_id, "inflight")):
            index = int(raw)
            line = by_index[index]
            job_id = line_job_id(batch_id, index)
            record = await runner.get(job_id)
            if record is None:  # its driver died between noting and handing it over
                if not stopping:
                    await self._submit(batch_id, line)
                    pending += 1
                else:
                    await self.redis.srem(batch_key(batch_id, "inflight"), index)
                continue
            if record.status in ("completed", "failed"):
                await self._write(batch_id, line, record)
            elif record.status == "cancelled":
                await self.redis.srem(batch_key(batch_id, "inflight"), index)
            else:
                if stopping and record.status == "queued":
                    await runner.cancel(job_id)
                pending += 1
        return pending

    async def _write(self, batch_id: str, line: BatchLine, record: Any) -> None:
        code = record.status_code or (200 if record.status == "completed" else 500)
        ok = record.status == "completed" and code < 400
        answer = answered_line(batch_id, line.custom_id, record.id, code, record.body)
        await self.store.record(batch_id, ok, f"c:{line.custom_id}", line.index, answer)
        await self.redis.srem(batch_key(batch_id, "inflight"), line.index)

    async def _hand_over(self, batch_id: str, lines: list[BatchLine], pending: int) -> int:
        """Give the runner more lines, up to `batch_max_in_flight` of this batch at a time."""
        cursor = int(await self.redis.get(batch_key(batch_id, "next")) or 0)
        while pending < self.settings.batch_max_in_flight and cursor < len(lines):
            line = lines[cursor]
            # Noted before it is handed over: a driver that dies in between leaves a note the
            # next one acts on (`_collect`); the job id makes handing it over twice harmless.
            await self.redis.sadd(batch_key(batch_id, "inflight"), line.index)
            if not await self._submit(batch_id, line):
                await self.redis.srem(batch_key(batch_id, "inflight"), line.index)
                break  # the queue is full or down: try again on the next pass
            cursor = int(await self.redis.incr(batch_key(batch_id, "next")))
            pending += 1
        return pending

    async def _submit(self, batch_id: str, line: BatchLine) -> bool:
        runner = self.runner()
        job_id = line_job_id(batch_id, line.index)
        if await runner.get(job_id) is not None:
            return True
        fields = await self.store.fields(batch_id)
        assert fields is not None
        try:
            await runner.submit(owner=fields["owner"] or None, endpoint=fields["endpoint"],
                                body=line.body, priority="batch", batch_id=batch_id,
                                job_id=job_id, base_url=fields.get("base_url", ""))
        except OpenAIError as exc:
            if exc.status in (429, 503):
                return False
            answer = answered_line(batch_id, line.custom_id, job_id, exc.status,
                                   exc.envelope())
            await self.store.record(batch_id, False, f"c:{line.custom_id}", line.index, answer)
            await self.redis.srem(batch_key(batch_id, "inflight"), line.index)
        return True

    async def _finish(self, fields: dict[str, str], lines: list[BatchLine], final: str) -> None:
        """Write the output and error files (the same file ids however often this runs), then
        the final status."""
        batch_id, owner, status = fields["id"], fields["owner"], fields["status"]
        if final == "completed" and status == "in_progress":
            await self.store.move(batch_id, ("in_progress",), "finalizing")
            status = "finalizing"
        if final == "expired":  # what never ran is reported, as OpenAI does
            for line in lines:
                answer = unanswered_line(batch_id, f"c:{line.custom_id}", line.custom_id,
                                         "batch_expired", "This request could not be executed "
                                         "before the completion window expired.")
                if not await self.redis.hexists(batch_key(batch_id, "done"),
                                                f"c:{line.custom_id}"):
                    await self.store.record(batch_id, False, f"c:{line.custom_id}", line.index,
                                            answer)
        keep = int(fields.get("output_expires") or 0) or None
        out_id, err_id = output_file_ids(batch_id)
        ids = {}
        for ok, file_id, name in ((True, out_id, "output"), (False, err_id, "errors")):
            answers = await self.store.answers(batch_id, ok)
            if answers:
                await self.files.put_bytes(owner, file_id, f"{batch_id}_{name}.jsonl",
                                           "batch_output", jsonl(answers), keep)
                ids["output_file_id" if ok else "error_file_id"] = file_id
        if await self.store.move(batch_id, (status,), final, **ids):
            self._lines.pop(batch_id, None)
            await self._announce(final, batch_id)

    async def _announce(self, final: str, batch_id: str) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(EVENTS[final], {"id": batch_id})
        except Exception as exc:  # a webhook outage must not stall batches
            log.warning("batch %s: the %s event could not be queued: %s", batch_id, final, exc)
