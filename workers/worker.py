"""A non-forking RQ worker that also announces final failures to the waiting gateway.

RQ's default worker forks a work horse per job, which would throw away a loaded pipeline each
time; `SimpleWorker` runs jobs in this process, where the pipelines stay resident.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from rq import SimpleWorker
from rq.registry import StartedJobRegistry
from rq.worker import WorkerStatus

from core.jobs import Outcome, is_batch_queue, publish_outcome
from core.storage import StorageError
from models.adapters import AdapterError
from workers import batching, runtime
from workers.heartbeat import Heartbeat

log = logging.getLogger("easel.worker")
GENERIC_FAILURE = ("the model could not render this request (the server log has the details, "
                   "under this request's id)")
STORAGE_FAILURE = "image storage was unavailable while saving the result; try again shortly"


def _residency() -> Any:
    """This process's workers.residency.Residency, or None (no runtime installed)."""
    try:
        return runtime.current().residency
    except RuntimeError:
        return None


def _metrics() -> Any:
    """This process's WorkerMetrics, or None (no runtime installed, or metrics off)."""
    try:
        return runtime.current().metrics
    except RuntimeError:
        return None


class EaselWorker(SimpleWorker):
    outcome_ttl = 3600
    max_batch_images = 8
    batch_work_images = 1  # images per call for jobs from the Batch API's queues
    max_batch_wait = 0.01  # seconds to wait for more compatible jobs after taking one
    liveness: Heartbeat | None = None  # not `heartbeat`: RQ has a method of that name
    # Longest wait for a job in one dequeue: RQ re-reads the worker's queues between waits, so
    # a pipeline loaded or unloaded at run time (workers.control) is followed within it.
    poll_seconds = 1

    @property
    def dequeue_timeout(self) -> int:
        return self.poll_seconds

    @property
    def connection_timeout(self) -> int:
        return max(1, self.worker_ttl - 15) + 10  # RQ's own: a Redis stall must not end us

    def execute_job(self, job: Any, queue: Any) -> None:
        if self._hand_back(job, queue):
            return
        try:
            self._execute_job(job, queue)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            # RQ retries Redis errors only in its dequeue loop; raised from here they would end
            # the worker. Our jobs' registry entries expire meanwhile, and a reaper elsewhere
            # hands them to a worker that can still reach Redis: drop our copies and wait.
            log.warning("lost Redis with a job in hand (%s); a reaper re-runs it", exc)
            batching.discard_all()
            delay = 0.5
            while not self._stop_requested:
                try:
                    self.connection.ping()
                    break
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
            log.warning("Redis is back; serving again")

    def _hand_back(self, job: Any, queue: Any) -> bool:
        """A job taken from a queue this worker stopped serving a moment ago (its pipeline was
        unloaded during the dequeue): back to the front of its queue, for another worker."""
        residency = _residency()
        payload = batching.payload_of(job) if residency is not None else None
        if payload is None or payload.pipeline in residency.served():
            return False
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 0, job.id)
            pipe.lpush(queue.key, job.id)
            pipe.execute()
        log.info("job %s: pipeline %s is no longer served here; handed back to its queue",
                 job.id, payload.pipeline, extra={"job_id": job.id})
        return True

    def _execute_job(self, job: Any, queue: Any) -> None:
        """Run `job` plus compatible queued jobs as one pipeline call, and pipeline the batches:
        while this batch's images are encoded, stored and announced (RQ's normal perform_job,
        on this thread), the next batch already denoises on a helper thread.

        Every job of both batches is prepared (started registry, worker name) before its
        pipeline call, so a crash leaves each of them visible to the reaper, as a lone job.
        """
        batch = [job]
        most = self._images_per_call(queue)
        if most > 1:
            batch += batching.drain(job, queue, most, self.max_batch_wait, self.serializer)
        executions = self._start(batch)
        self._hold(batch, executions)
        if batching.batchable(job):
            self._render(batch)
        try:
            while batch:
                following, denoising = self._start_next(queue, batch, executions)
                for j, execution in zip(batch, executions, strict=True):
                    self.perform_job(j, queue, execution)
                if denoising is not None:
                    denoising.join()
                batch, executions = following
        finally:
            if self.liveness is not None:
                self.liveness.release()
            metrics = _metrics()
            if metrics is not None:  # easel_jobs_running: nothing is held between batches
                metrics.released_all()
        self.set_state(WorkerStatus.IDLE)

    def _start_next(self, queue: Any, batch: list[Any], executions: list[Any]) -> tuple[
            tuple[list[Any], list[Any]], threading.Thread | None]:
        """Claim and start denoising the next batch unless stopping or nothing fits."""
        if self._stop_requested or not batching.batchable(batch[0]):
            return ([], []), None
        if is_batch_queue(queue.name) and self._live_waiting():
            return ([], []), None  # back to RQ's dequeue, which takes live queues first
        following = batching.claim_next(queue, self._images_per_call(queue), self.serializer,
                                        frozenset(j.id for j in batch))
        if not following:
            return ([], []), None
        next_executions = self._start(following)
        self._hold(batch + following, executions + next_executions)
        thread = threading.Thread(target=self._render, args=(following,), daemon=True,
                                  name="easel-next-batch")
        thread.start()
        return (following, next_executions), thread

    def _images_per_call(self, queue: Any) -> int:
        """Batch API work renders in small calls: a live request waits for one of them."""
        if is_batch_queue(queue.name):
            return min(self.batch_work_images, self.max_batch_images)
        return self.max_batch_images

    def _live_waiting(self) -> bool:
        """Whether a live request waits in one of this worker's live queues."""
        return any(q.count > 0 for q in self.queues if not is_batch_queue(q.name))

    def _start(self, jobs: list[Any]) -> list[Any]:
        """Mark jobs started before their pipeline call, as RQ's perform_job would (status,
        worker name, started registry): RQ's cleanup only rescues jobs marked STARTED, so a job
        rendered before its perform_job must already be one."""
        executions = [self.prepare_execution(j) for j in jobs]
        metrics = _metrics()
        for j in jobs:
            self.prepare_job_execution(j)
            payload = batching.payload_of(j) if metrics is not None else None
            if metrics is not None and payload is not None:
                metrics.claimed(payload.pipeline, j.id)
        # Started now: off RQ's intermediate list, where only jobs whose worker died between
        # dequeue and start remain (the reaper queues those again).
        with self.connection.pipeline() as pipe:
            for j in jobs:
                pipe.lrem(self.queue_class(j.origin, connection=self.connection)
                          .intermediate_queue_key, 0, j.id)
            pipe.execute()
        return executions

    def _render(self, batch: list[Any]) -> None:
        """One pipeline call for a batch of plain generations; its images are parked for the
        jobs' own perform_job.  On failure every job renders alone and fails alone."""
        try:
            head = batching.payload_of(batch[0])
            if head is not None:
                with self._rendering(sum(p.n for p in map(batching.payload_of, batch) if p)):
                    batching.render_batch(runtime.current().pipeline(head.pipeline), batch)
        except AdapterError:  # the jobs name it: each fails alone with its message, no trace
            batching.discard(batch)
        except Exception:
            log.exception("batched call failed; running %d job(s) one by one", len(batch))
            batching.discard(batch)

    def _rendering(self, images: int) -> contextlib.AbstractContextManager[None]:
        return (self.liveness.rendering(images) if self.liveness is not None
                else contextlib.nullcontext())

    def _hold(self, jobs: list[Any], executions: list[Any]) -> None:
        if self.liveness is not None:
            self.liveness.hold([(StartedJobRegistry(j.origin, self.connection).key,
                                 e.composite_key) for j, e in zip(jobs, executions, strict=True)])

    def handle_job_failure(self, job: Any, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        final = not job.should_retry  # decided before RQ requeues a retry
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry,
                                   exc_string=exc_string, execution=execution)
        if final:
            # The traceback stays in this log; clients get a message that names no internals.
            last = (exc_string.strip().splitlines() or ["?"])[-1][:500]
            log.error("job %s failed for good: %s", job.id, last)
            publish_outcome(self.connection, _failure(job.id, last), self.outcome_ttl)


def _failure(job_id: str, last: str) -> Outcome:
    """The outcome of a job that failed for good, from its exception's line: storage trouble
    and an adapter that failed to load are told as such (the adapter's message names no file),
    anything else in words that name no internals."""
    adapter = f"{AdapterError.__module__}.{AdapterError.__name__}: "
    if last.startswith(adapter):
        return Outcome(job_id=job_id, status="failed", error=last.removeprefix(adapter),
                       error_type="adapter_unavailable")
    if last.startswith(f"{StorageError.__module__}.{StorageError.__name__}"):
        return Outcome(job_id=job_id, status="failed", error=STORAGE_FAILURE,
                       error_type="storage_unavailable")
    return Outcome(job_id=job_id, status="failed", error=GENERIC_FAILURE,
                   error_type="generation_failed")
