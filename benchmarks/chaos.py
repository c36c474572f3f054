"""Chaos run: steady client load while workers, Redis and S3 fail under it; nothing may be lost.

    python -m benchmarks.chaos                 # 150 s of load, about 3 minutes in all
    python -m benchmarks.chaos --quick         # under a minute in all: a smoke test
    python -m benchmarks.chaos --seconds 300 --clients 8 --seed 7

Starts a private Redis (AOF on), SeaweedFS as S3, one gateway and two workers (1 torch thread
each, recovery timings shortened through EASEL_HEARTBEAT_SECONDS=1, EASEL_LIVENESS_TTL_SECONDS=5,
EASEL_REAPER_SECONDS=1).  This script supervises each worker the way `easel up` does: 1 s after
it dies it is started again with the same EASEL_NAME (as a container restart would).

Client threads use the official `openai` SDK (max_retries=0, Retry-After honoured): generations
(easel-shapes at 64/128 px, dall-e-2 at 256 px, n 1-2, b64_json or URLs that are then fetched),
masked edits, and streaming generations (partial_images=2); 8-20 denoising steps each.

Faults: every 15-30 s SIGKILL to a random worker; once a Redis restart (stop, then start on the
same port and AOF directory); once SeaweedFS stopped for 10 s (--quick: one of each).

Report: requests sent, images delivered, clean errors (429/503/504 with an error message; their
codes and Retry-After values), requests LOST (no answer, another 5xx, a stream that ended without
its completed or error event, an error event that stands for a 500, fewer images than asked,
an image that cannot be read), duplicated images (more than n, a seed twice, the same image or
job id in two answers) and the recovery time after each kill: from the SIGKILL until every
request whose job the killed worker held (read from RQ's started registry right after the kill)
got its images.  Exit status 1 when anything was lost or duplicated, 2 when nothing was but some
request timed out (a 504 is a clean answer, yet under these faults it means a job that did not
recover within the 60 s request timeout); the run's folder (process logs, one JSON line per
request in requests.jsonl) is then kept and printed, with each such request's log lines.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import openai
from PIL import Image, ImageDraw
from redis import Redis

from benchmarks.report import percentile
from tests.support import ROOT, RedisServer, SeaweedS3, base_env, free_port, stop, wait_port

BUCKET = "easel-chaos"
REQUEST_TIMEOUT = 60  # the gateway's EASEL_REQUEST_TIMEOUT_SECONDS: a job stuck longer is a 504
CLIENT_TIMEOUT = 90  # the SDK's; beyond it a request counts as unanswered
REDIS_DOWN, S3_DOWN = 3.0, 10.0  # seconds each store stays away
PROMPTS = ["a red circle", "two blue squares", "a green triangle on the left",
           "a purple circle above a yellow square", "three cyan circles"]
COLOURS = ["red", "blue", "green", "purple", "yellow", "cyan"]
CLEAN_STREAM_CODES = {"timeout", "storage_unavailable", "service_unavailable"}  # 504/503 kinds


def now() -> float:
    return time.monotonic()


# ---- the processes -------------------------------------------------------------------------

@dataclass
class Slot:
    """One supervised process: restarted 1 s after it dies, with the same environment."""

    name: str
    command: str  # "worker" or "serve"
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    dead_since: float | None = None
    exits: list[tuple[float, int]] = field(default_factory=list)  # (when, return code)

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            # A session of its own: Ctrl-C reaches this script only, which stops everything in
            # order (workers before Redis) instead of every process at once.
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", self.command], cwd=ROOT,
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """`easel up`'s loop: poll every 0.5 s, restart a dead process after 1 s."""

    def __init__(self, say: Any) -> None:
        self.slots: list[Slot] = []
        self.lock = threading.Lock()
        self.say = say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def add(self, slot: Slot) -> Slot:
        slot.spawn()
        self.slots.append(slot)
        return slot

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                for slot in self.slots:
                    if slot.running() or self._stop.is_set():
                        slot.dead_since = None
                        continue
                    if slot.dead_since is None:
                        assert slot.proc is not None
                        slot.dead_since = now()
                        slot.exits.append((now(), slot.proc.returncode))
                        self.say(f"{slot.name} exited with {slot.proc.returncode}; "
                                 f"restarting it in 1 s")
                    elif now() - slot.dead_since >= 1.0:
                        slot.dead_since = None
                        slot.spawn()

    def kill(self, rng: random.Random, names: list[str]) -> tuple[Slot, int] | None:
        """SIGKILL a random running worker among `names`; None when none runs."""
        with self.lock:
            alive = [s for s in self.slots if s.name in names and s.running()]
            if not alive:
                return None
            slot = rng.choice(alive)
            assert slot.proc is not None
            slot.proc.send_signal(signal.SIGKILL)
            slot.proc.wait(timeout=5)  # dead for sure before its jobs are read
            return slot, slot.proc.pid

    def close(self) -> None:
        self._stop.set()
        with self.lock:  # the loop cannot restart anything from here on
            order = [s for s in self.slots if s.command == "worker"] + \
                    [s for s in self.slots if s.command != "worker"]
            for slot in order:
                if slot.running():
                    assert slot.proc is not None
                    slot.proc.send_signal(signal.SIGTERM)
            for slot in order:
                stop(slot.proc, timeout=15)  # SIGTERM again (no-op if gone), then SIGKILL


class Rig:
    """Redis (AOF) + SeaweedFS + gateway + supervised workers, all under one folder."""

    def __init__(self, workers: int, say: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="easel-chaos-"))
        self.say = say
        self.n_workers = workers
        self.redis_server = RedisServer(self.dir / "redis", appendonly=True)
        # Election timeout 1 s: a restarted single-node master otherwise waits ~10 s to lead.
        self.s3 = SeaweedS3(self.dir / "seaweed", extra_args=[
            "-master.electionTimeout=1s", "-volume.preStopSeconds=0"])
        self.supervisor = Supervisor(say)
        self.port = free_port()
        self.worker_names = [f"chaos-w{i}" for i in range(workers)]
        self.env: dict[str, str] = {}
        self.queues: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Rig:
        from core.catalog import load_catalog

        self.queues = [p.queue for p in load_catalog(None).pipelines.values()]
        self.redis_server.start()
        self.redis = Redis.from_url(self.redis_server.url, socket_timeout=5,
                                    socket_connect_timeout=2)
        self.s3.start()
        self.s3_client = self._s3_client()
        self._wait_s3(create=True, timeout=60)
        self.env = base_env(
            self.redis_server.url, self.dir, **self.s3.env(BUCKET),
            EASEL_LOG_JSON="true", EASEL_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT),
            EASEL_HEARTBEAT_SECONDS="1", EASEL_LIVENESS_TTL_SECONDS="5",
            EASEL_REAPER_SECONDS="1")
        for name in self.worker_names:
            self.supervisor.add(Slot(name, "worker", dict(self.env, EASEL_NAME=name),
                                     self.dir / f"{name}.log"))
        gateway = self.supervisor.add(Slot("gateway", "serve",
                                           dict(self.env, EASEL_PORT=str(self.port)),
                                           self.dir / "gateway.log"))
        self.supervisor.start()
        wait_port(self.port, timeout=60, proc=gateway.proc)
        self._wait_workers(self.n_workers, timeout=180)
        return self

    def _s3_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.s3.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.s3.access_key,
                            aws_secret_access_key=self.s3.secret_key,
                            config=Config(signature_version="s3v4",
                                          s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}, connect_timeout=2,
                                          read_timeout=5))

    def _wait_s3(self, create: bool = False, timeout: float = 60) -> float:
        """Until an object can be written and read back (SeaweedFS opens its S3 port before its
        filer is ready); returns the seconds it took."""
        t0 = now()
        while True:
            try:
                if create:
                    with contextlib.suppress(Exception):
                        self.s3_client.create_bucket(Bucket=BUCKET)
                self.s3_client.put_object(Bucket=BUCKET, Key="chaos/probe", Body=b"ok")
                self.s3_client.get_object(Bucket=BUCKET, Key="chaos/probe")["Body"].read()
                return now() - t0
            except Exception:
                if now() - t0 > timeout:
                    raise
                time.sleep(0.25)

    def live_workers(self) -> int:
        """The gateway's own count (GET /v1/models), the figure its admission uses."""
        r = httpx.get(f"{self.base_url}/v1/models", timeout=5)
        counts = [m.get("workers") for m in r.json().get("data", [])]
        return min((c for c in counts if isinstance(c, int)), default=0)

    def _wait_workers(self, n: int, timeout: float) -> None:
        deadline = now() + timeout
        last = "no answer yet"
        while True:
            try:
                if self.live_workers() >= n:
                    return
                last = "fewer live workers"
            except Exception as exc:
                last = repr(exc)
            for slot in self.supervisor.slots:
                if slot.starts > 1:
                    log = slot.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{slot.name} died while starting:\n{log}")
            if now() > deadline:
                raise TimeoutError(f"{n} workers did not become live (GET /v1/models: {last})")
            time.sleep(0.3)

    def restart_redis(self) -> None:
        self.redis_server.stop()
        time.sleep(REDIS_DOWN)
        self.redis_server.start()  # same port, same AOF directory

    def outage_s3(self) -> float:
        """SeaweedFS away for S3_DOWN seconds (SIGTERM; SIGKILL after 3 s, as it takes ~17 s
        to exit by itself); returns how long after its restart it stored objects again."""
        t0 = now()
        stop(self.s3.proc, timeout=3)
        time.sleep(max(0.0, S3_DOWN - (now() - t0)))
        self.s3.start()  # same ports, same directory
        return self._wait_s3(timeout=120)

    def jobs_held_by(self, worker: str) -> list[str]:
        """Request ids of the jobs `worker` held (RQ's started registry), read after its kill:
        a dead worker's entries stay there until the reaper hands them back."""
        from rq.job import Job
        from rq.registry import StartedJobRegistry
        from rq.serializers import JSONSerializer

        ids: list[str] = []
        for q in self.queues:
            registry = StartedJobRegistry(q, connection=self.redis, serializer=JSONSerializer)
            ids += registry.get_job_ids(cleanup=False)
        held = []
        for job in Job.fetch_many(ids, connection=self.redis, serializer=JSONSerializer):
            name = (job.worker_name or "") if job is not None else ""
            # Worker names may carry a per-start suffix: chaos-w0-1a2b3c.
            if job is not None and (name == worker or name.startswith(worker + "-")):
                payload = job.args[0] if job.args else {}
                if isinstance(payload, dict) and payload.get("request_id"):
                    held.append(str(payload["request_id"]))
        return held

    def counter(self, key: str) -> int | None:
        try:
            value = self.redis.get(key)
            return int(value) if value is not None else 0
        except Exception:
            return None

    def close(self) -> None:
        self.supervisor.close()
        stop(self.s3.proc, timeout=3)
        self.redis_server.stop()


# ---- the clients ---------------------------------------------------------------------------

@dataclass
class Record:
    rid: str
    kind: str  # generate | edit | stream
    model: str
    size: str
    n: int
    fmt: str  # b64_json | url
    steps: int
    seed: int
    t0: float
    t1: float | None = None
    result: str = "pending"  # ok | clean | lost | unexpected
    status: int | None = None
    code: str | None = None
    retry_after: str | None = None
    detail: str = ""
    images: int = 0
    partials: int = 0
    repeated_partials: int = 0
    duplicates: int = 0  # images beyond n, a seed twice, a second completed event
    hashes: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.inflight: dict[str, Record] = {}
        self._n = 0

    def new(self, **kw: Any) -> Record:
        with self.lock:
            self._n += 1
            rec = Record(rid=f"chaos-{self._n:05d}", seed=self._n * 16, t0=now(), **kw)
            self.inflight[rec.rid] = rec
            return rec

    def done(self, rec: Record) -> None:
        with self.lock:
            if self.inflight.pop(rec.rid, None) is None:
                return  # already closed as unanswered at the end of the run
            rec.t1 = now()
            self.records.append(rec)

    def in_flight(self) -> list[str]:
        with self.lock:
            return list(self.inflight)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def edit_inputs(px: int, rng: random.Random) -> tuple[bytes, bytes]:
    """A white canvas with one shape, and a mask whose right half (alpha 0) is redrawn."""
    source = Image.new("RGB", (px, px), "white")
    draw = ImageDraw.Draw(source)
    r = px // 5
    cx, cy = rng.randint(r, px // 2), rng.randint(r, px - r)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rng.choice(COLOURS))
    mask = Image.new("RGBA", (px, px), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (px // 2, 0, px, px))
    return _png(source), _png(mask)


def _read_image(data: bytes, size: str) -> str | None:
    """None when `data` is a whole image of `size`, else what is wrong with it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if f"{im.width}x{im.height}" != size:
                return f"image is {im.width}x{im.height}, asked {size}"
    except Exception as exc:
        return f"unreadable image: {exc}"
    return None


def _fetch_url(url: str, patience: float = 30) -> bytes:
    """A returned URL must lead to its image; while S3 is away, keep trying for a while."""
    deadline = now() + patience
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return bytes(r.read())
        except Exception:
            if now() > deadline:
                raise
            time.sleep(0.5)


JOB_IN_URL = re.compile(r"/images/([0-9a-f]{16,64})/\d+\.")


class Client:
    def __init__(self, index: int, base_url: str, ledger: Ledger, stop_at: threading.Event,
                 seed: int) -> None:
        self.ledger = ledger
        self.stopping = stop_at
        self.rng = random.Random(seed * 1000 + index)
        self.sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key="chaos", max_retries=0,
                                 timeout=CLIENT_TIMEOUT)
        self.thread = threading.Thread(target=self._loop, name=f"client-{index}", daemon=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            kind = self.rng.choices(["generate", "edit", "stream"], [0.5, 0.25, 0.25])[0]
            rec = self._one(kind)
            if rec.result == "clean" and rec.retry_after:  # do as a polite client would
                with contextlib.suppress(ValueError):
                    self.stopping.wait(min(float(rec.retry_after), 10.0))

    def _one(self, kind: str) -> Record:
        rng = self.rng
        if kind != "stream" and rng.random() < 0.3:
            model, px = "dall-e-2", 256
        else:
            model, px = "easel-shapes", rng.choice([64, 128])
        n = rng.choice([1, 1, 2]) if kind == "generate" else 1
        fmt = "url" if kind != "stream" and rng.random() < 0.25 else "b64_json"
        rec = self.ledger.new(kind=kind, model=model, size=f"{px}x{px}", n=n, fmt=fmt,
                              steps=rng.randint(8, 20))
        try:
            if kind == "stream":
                self._stream(rec, rng.choice(PROMPTS))
            else:
                self._plain(rec, kind, rng.choice(PROMPTS), px)
            if rec.result == "pending":
                rec.result = "ok"
        except openai.APIStatusError as exc:
            rec.status = exc.status_code
            body = exc.body if isinstance(exc.body, dict) else {}
            rec.code = str(body.get("code")) if body.get("code") else None
            rec.retry_after = exc.response.headers.get("retry-after")
            message = body.get("message")
            rec.detail = str(message or exc)[:300]
            if exc.status_code in (429, 503, 504) and message:
                rec.result = "clean"
            elif exc.status_code >= 500 or exc.status_code in (429, 503, 504):
                rec.result = "lost"
            else:
                rec.result = "unexpected"  # a 4xx: this script sent something wrong
        except openai.APITimeoutError:
            rec.result, rec.detail = "lost", f"no answer within {CLIENT_TIMEOUT} s"
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            rec.result, rec.detail = "lost", f"no answer: {type(cause).__name__}: {cause}"[:300]
        except openai.APIError as exc:  # an error event inside a stream
            body = exc.body if isinstance(exc.body, dict) else {}
            rec.code = str(body.get("code"))
            rec.detail = f"stream error event after {rec.partials} previews: {exc.message}"[:300]
            rec.result = "clean" if rec.code in CLEAN_STREAM_CODES else "lost"
        except Exception as exc:  # anything else is this script's own fault: show it
            rec.result, rec.detail = "unexpected", f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.ledger.done(rec)
        return rec

    def _extra(self, rec: Record) -> dict[str, Any]:
        return {"extra_headers": {"X-Request-Id": rec.rid},
                "extra_body": {"steps": rec.steps, "seed": rec.seed}}

    def _plain(self, rec: Record, kind: str, prompt: str, px: int) -> None:
        if kind == "generate":
            answer = self.sdk.images.generate(
                model=rec.model, prompt=prompt, n=rec.n, size=cast(Any, rec.size),
                response_format=cast(Any, rec.fmt), **self._extra(rec))
        else:
            source, mask = edit_inputs(px, self.rng)
            answer = self.sdk.images.edit(
                image=("source.png", source, "image/png"), mask=("mask.png", mask, "image/png"),
                model=rec.model, prompt=prompt, n=rec.n, size=cast(Any, rec.size),
                response_format=cast(Any, rec.fmt), **self._extra(rec))
        items = answer.data or []
        seeds = [s for s in (getattr(item, "seed", None) for item in items) if s is not None]
        if len(items) > rec.n or len(set(seeds)) < len(seeds):
            rec.duplicates += max(len(items) - rec.n, len(seeds) - len(set(seeds)))
        elif seeds and seeds != list(range(rec.seed, rec.seed + len(seeds))):
            rec.result = "lost"  # images of some other request
            rec.detail = f"images carry seeds {seeds}, asked from {rec.seed}"
            return
        for item in items:
            if rec.fmt == "url":
                url = item.url or ""
                match = JOB_IN_URL.search(url)
                if match:
                    rec.job_ids.append(match.group(1))
                try:
                    data = _fetch_url(url)
                except Exception as exc:
                    rec.result, rec.detail = "lost", f"returned URL not readable: {exc}"[:300]
                    return
            else:
                data = base64.b64decode(item.b64_json or "")
            problem = _read_image(data, rec.size)
            if problem:
                rec.result, rec.detail = "lost", problem
                return
            rec.hashes.append(hashlib.sha256(data).hexdigest())
            rec.images += 1
        if len(items) < rec.n:
            rec.result, rec.detail = "lost", f"{len(items)} image(s) for n={rec.n}"

    def _stream(self, rec: Record, prompt: str) -> None:
        seen: set[int] = set()
        with self.sdk.images.generate(
                model=rec.model, prompt=prompt, size=cast(Any, rec.size), stream=True,
                partial_images=2, **self._extra(rec)) as events:
            completed = self._events(rec, events, seen)
        if not completed and rec.result == "pending":
            rec.result = "lost"
            rec.detail = f"stream ended after {rec.partials} previews without completed/error"

    def _events(self, rec: Record, events: Any, seen: set[int]) -> int:
        """Read a stream to its end; returns how many completed events it carried."""
        completed = 0
        for event in events:
            if event.type.endswith("partial_image"):
                index = getattr(event, "partial_image_index", -1)
                rec.partials += 1
                rec.repeated_partials += index in seen  # a re-run job previews again
                seen.add(index)
            elif event.type.endswith("completed"):
                completed += 1
                data = base64.b64decode(getattr(event, "b64_json", "") or "")
                problem = _read_image(data, rec.size)
                if problem:
                    rec.result, rec.detail = "lost", problem
                    return completed
                if completed > 1:
                    rec.duplicates += 1
                    continue
                rec.hashes.append(hashlib.sha256(data).hexdigest())
                rec.images += 1
        return completed


# ---- the faults ----------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str  # kill | redis | s3
    at: float  # planned, seconds into the run
    started: float = 0.0  # monotonic
    ended: float = 0.0
    note: str = ""
    worker: str = ""
    held: list[str] = field(default_factory=list)  # request ids of the killed worker's jobs
    inflight: list[str] = field(default_factory=list)  # every request in flight at the kill


def plan(seconds: float, rng: random.Random, quick: bool = False) -> list[Fault]:
    """Kills every 15-30 s, kept clear of the Redis restart and the S3 outage (so each loss
    points at one fault).  --quick: one kill, then Redis, then S3, each once."""
    if quick:
        return [Fault("kill", 3.0), Fault("redis", 11.0), Fault("s3", 18.0)]
    kill_every = (15.0, 30.0)
    redis_at, s3_at = round(seconds * 0.4), round(seconds * 0.65)
    clear = [(redis_at - 10, redis_at + REDIS_DOWN + 10), (s3_at - 10, s3_at + S3_DOWN + 10)]
    faults = [Fault("redis", redis_at), Fault("s3", s3_at)]
    t = round(rng.uniform(*kill_every) / 2, 1)
    while t < seconds - 8:
        busy = next((c for c in clear if c[0] <= t < c[1]), None)
        if busy is not None:
            t = busy[1]  # just after the window: no longer inside it
            continue
        faults.append(Fault("kill", t))
        t = round(t + rng.uniform(*kill_every), 1)
    return sorted(faults, key=lambda f: f.at)


class Chaos:
    def __init__(self, rig: Rig, ledger: Ledger, faults: list[Fault], rng: random.Random,
                 t0: float, say: Any) -> None:
        self.rig, self.ledger, self.faults, self.rng, self.t0 = rig, ledger, faults, rng, t0
        self.say = say
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def _run(self) -> None:
        for fault in self.faults:
            if self.stopping.wait(max(0.0, self.t0 + fault.at - now())):
                return
            try:
                getattr(self, f"_{fault.kind}")(fault)
            except Exception as exc:
                fault.note = f"failed: {exc!r}"
                self.say(f"fault {fault.kind} failed: {exc!r}")

    def _kill(self, fault: Fault) -> None:
        killed = self.rig.supervisor.kill(self.rng, self.rig.worker_names)
        fault.started = fault.ended = now()
        if killed is None:
            fault.note = "no worker running"
            return
        slot, pid = killed
        fault.inflight = self.ledger.in_flight()
        fault.worker = slot.name
        try:
            fault.held = self.rig.jobs_held_by(slot.name)
        except Exception as exc:
            fault.note = f"could not read its jobs ({exc!r})"
        self.say(f"SIGKILL {slot.name} (pid {pid}): it held {len(fault.held)} job(s) "
                 f"{fault.held}; {len(fault.inflight)} request(s) in flight")

    def _redis(self, fault: Fault) -> None:
        fault.started = now()
        self.say("Redis: stop")
        self.rig.restart_redis()
        fault.ended = now()
        self.say(f"Redis: started again (down {fault.ended - fault.started:.1f} s)")

    def _s3(self, fault: Fault) -> None:
        fault.started = now()
        self.say(f"SeaweedFS: stop for {S3_DOWN:.0f} s")
        ready = self.rig.outage_s3()
        fault.ended = now()
        fault.note = f"storing again {ready:.1f} s after its restart"
        self.say(f"SeaweedFS: back, {fault.note} (away {fault.ended - fault.started:.1f} s)")


# ---- the report ----------------------------------------------------------------------------

def near(rec: Record, faults: list[Fault], t0: float) -> str:
    """The faults whose effects could reach this request (started before it ended, ended less
    than 20 s before it began)."""
    names = [f"{f.kind}@{f.at:.0f}s" + (f"({f.worker})" if f.worker else "") for f in faults
             if f.started and f.started <= (rec.t1 or now()) and f.ended + 20 >= rec.t0]
    return ", ".join(names) or "no fault"


def recovery(faults: list[Fault], by_rid: dict[str, Record]) -> tuple[list[float], list[str]]:
    times, lines = [], []
    for f in faults:
        if f.kind != "kill" or not f.started:
            continue
        # Only requests still waiting at the kill: a job can stay "started" for a moment after
        # its answer went out (outcome published, RQ's bookkeeping not yet done).
        held = [by_rid[r] for r in f.held if r in by_rid and r in f.inflight]
        done_before = [r for r in f.held if r not in f.inflight]
        if not f.worker:
            lines.append(f"  kill@{f.at:.0f}s: {f.note}")
            continue
        if not held:
            lines.append(f"  kill@{f.at:.0f}s {f.worker}: held no job still awaited "
                         f"({len(done_before)} already answered; {len(f.inflight)} request(s) "
                         f"in flight elsewhere)")
            continue
        ok = [r for r in held if r.result == "ok" and r.t1 is not None]
        if len(ok) == len(held):
            seconds = max(cast(float, r.t1) for r in ok) - f.started
            times.append(seconds)
            lines.append(f"  kill@{f.at:.0f}s {f.worker}: {len(held)} job(s) in hand, all "
                         f"delivered {seconds:.1f} s after the kill")
        else:
            bad = [f"{r.rid}={r.result}:{r.status or ''}{r.code or ''}" for r in held
                   if r not in ok]
            lines.append(f"  kill@{f.at:.0f}s {f.worker}: {len(held)} job(s) in hand, NOT all "
                         f"delivered: {bad}")
    return times, lines


def _p(recs: list[Record], q: float) -> str:
    xs = [r.t1 - r.t0 for r in recs if r.t1 is not None]
    return f"{percentile(xs, q):.1f} s" if xs else "-"


class Logs:
    """The processes' JSON log lines, to show what happened to one request."""

    def __init__(self, folder: Path) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []  # (ts, process, line)
        for path in sorted(folder.glob("*.log")):
            for raw in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict) and "ts" in line:
                        self.lines.append((str(line["ts"]), path.stem, line))
        self.lines.sort(key=lambda t: t[0])

    def trail(self, rid: str, limit: int = 8) -> list[str]:
        jobs = {str(line["job_id"]) for _, _, line in self.lines
                if line.get("request_id") == rid and line.get("job_id")}
        out = []
        for ts, proc, line in self.lines:
            msg = str(line.get("msg", ""))
            if line.get("request_id") == rid or any(j in msg for j in jobs):
                rows = [r.strip() for r in msg.splitlines() if r.strip()] or [""]
                text = rows[0] + (f" ... {rows[-1]}" if len(rows) > 1 else "")
                if line.get("exc_type"):  # JSON logs may carry the exception apart
                    text += f" [{line['exc_type']}: {line.get('exc_message', '')}]"
                out.append(f"      {ts[11:]} {proc}: {text[:220]}")
        return out[:limit] + ([f"      ... {len(out) - limit} more"] if len(out) > limit else [])


def report(rig: Rig, ledger: Ledger, faults: list[Fault], t0: float, args: argparse.Namespace,
           wall: float) -> tuple[list[str], int]:
    """The printed figures, and the exit status: 1 when anything was lost or duplicated, 2 when
    only timeouts (504) happened, else 0."""
    recs = sorted(ledger.records, key=lambda r: r.t0)
    by_rid = {r.rid: r for r in recs}
    kinds = Counter(r.kind for r in recs)
    ok = [r for r in recs if r.result == "ok"]
    clean = [r for r in recs if r.result == "clean"]
    lost = [r for r in recs if r.result == "lost"]
    odd = [r for r in recs if r.result == "unexpected"]
    # The same image bytes, or the same job id, in two different answers.
    owner: dict[str, str] = {}
    for r in recs:
        for key in [*r.hashes, *r.job_ids]:
            if owner.setdefault(key, r.rid) != r.rid:
                r.duplicates += 1
    dup = [r for r in recs if r.duplicates]
    codes = Counter(f"{r.status or 'stream'} {r.code}" for r in clean)
    retry = Counter(f"{r.status or 'stream'} {r.code}: {r.retry_after or 'none'}"
                    for r in clean)
    kills = [f for f in faults if f.kind == "kill" and f.started]
    times, kill_lines = recovery(faults, by_rid)
    restarts = sum(s.starts - 1 for s in rig.supervisor.slots if s.command == "worker")
    exits = sorted((when - t0, s.name, code) for s in rig.supervisor.slots for when, code in s.exits
                   if code != -signal.SIGKILL)
    gateway_restarts = sum(s.starts - 1 for s in rig.supervisor.slots if s.command == "serve")
    reaped = rig.counter("easel:stats:reaped")
    redis_f = next((f for f in faults if f.kind == "redis"), None)
    s3_f = next((f for f in faults if f.kind == "s3"), None)
    lines = [
        f"chaos: {args.seconds:.0f} s of load ({wall:.0f} s with start, drain and stop), "
        f"{args.clients} clients, 2 workers (1 torch thread each, restarted by this script "
        f"with the same EASEL_NAME), Redis AOF, SeaweedFS S3, seed {args.seed}",
        f"  faults: {len(kills)} worker SIGKILLs; Redis restart at "
        f"{redis_f.at if redis_f else '-'} s ({REDIS_DOWN:.0f} s down); SeaweedFS stopped at "
        f"{s3_f.at if s3_f else '-'} s for {S3_DOWN:.0f} s"
        + (f" ({s3_f.note})" if s3_f and s3_f.note else ""),
        f"  requests sent        {len(recs)} (generate {kinds['generate']}, edit {kinds['edit']}, "
        f"stream {kinds['stream']})",
        f"  answered with images {len(ok)} (latency p50 {_p(ok, 50)}, p99 {_p(ok, 99)}); "
        f"images delivered {sum(r.images for r in recs)} "
        f"(+ {sum(r.partials for r in recs)} streamed previews, "
        f"{sum(r.repeated_partials for r in recs)} of them repeated by a re-run job)",
        f"  clean errors         {len(clean)}"
        + (": " + ", ".join(f"{k} x{v}" for k, v in sorted(codes.items())) if clean else ""),
    ]
    if retry:
        lines.append("    Retry-After values: "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(retry.items())))
    timeouts = [r for r in clean if r.status == 504 or r.code == "timeout"]
    if timeouts:
        lines.append(f"    WARNING: {len(timeouts)} request(s) waited past the {REQUEST_TIMEOUT} s "
                     f"request timeout (504): their jobs never finished in time")
    causes = Counter(near(r, faults, t0) for r in lost)
    lines += [
        f"  requests LOST        {len(lost)}" + (" (by the faults around them: " + ", ".join(
            f"{k} x{v}" for k, v in causes.most_common()) + ")" if lost else ""),
        f"  duplicated images    {sum(r.duplicates for r in recs)} (in {len(dup)} answer(s))",
        "  recovery after kill  " + (
            f"p50 {percentile(times, 50):.1f} s, p99 {percentile(times, 99):.1f} s, "
            f"max {max(times):.1f} s over {len(times)} kill(s) with jobs in hand"
            if times else "none (no kill with all its jobs delivered)"),
        *kill_lines,
        f"  worker restarts {restarts}, gateway restarts {gateway_restarts}, jobs reaped "
        f"{reaped if reaped is not None else '?'}",
        "  exits other than our SIGKILLs: " + (", ".join(
            f"{name} exit {code} at {when:.1f} s" for when, name, code in exits) or "none"),
    ]
    if odd:
        lines.append(f"  UNEXPECTED (script errors or 4xx) {len(odd)}")
    logs = Logs(rig.dir) if lost or dup or odd or timeouts else None
    for title, group in (("lost", lost), ("duplicated", dup), ("timed out", timeouts),
                         ("unexpected", odd)):
        for r in group[:args.show]:
            lines.append(f"  {title}: {r.rid} {r.kind} {r.model} {r.size} n={r.n} {r.fmt} at "
                         f"{r.t0 - t0:.1f}-{(r.t1 or now()) - t0:.1f} s [{near(r, faults, t0)}]: "
                         f"{r.status or ''} {r.code or ''} {r.detail}")
            if logs is not None and args.show_logs:
                lines += logs.trail(r.rid)
        if len(group) > args.show:
            lines.append(f"  ... {len(group) - args.show} more {title} in requests.jsonl")
    return lines, 1 if lost or dup else 2 if timeouts else 0


def run(args: argparse.Namespace) -> int:
    t_start = now()
    rng = random.Random(args.seed)
    t0 = [now()]

    def say(message: str) -> None:
        print(f"[{now() - t0[0]:6.1f}s] {message}", flush=True)

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    rig = Rig(2, say)
    ledger = Ledger()
    keep = args.keep
    chaos: Chaos | None = None
    stop_clients = threading.Event()
    try:
        say(f"starting Redis, SeaweedFS, the gateway and 2 workers under {rig.dir}")
        rig.start()
        faults = plan(args.seconds, rng, args.quick)
        say("ready; faults planned at " + ", ".join(f"{f.kind}@{f.at:.0f}s" for f in faults))
        t0[0] = now()
        say(f"load starts at {time.strftime('%H:%M:%S', time.gmtime())} UTC (the logs' "
            f"clock): {args.clients} clients for {args.seconds:.0f} s")
        clients = [Client(i, rig.base_url, ledger, stop_clients, args.seed)
                   for i in range(args.clients)]
        for c in clients:
            c.thread.start()
        chaos = Chaos(rig, ledger, faults, rng, t0[0], say)
        chaos.thread.start()
        time.sleep(max(0.0, t0[0] + args.seconds - now()))
        stop_clients.set()
        say(f"load over: waiting for {len(ledger.in_flight())} request(s) in flight")
        chaos.thread.join(timeout=150)
        deadline = now() + CLIENT_TIMEOUT + 10
        for c in clients:
            c.thread.join(timeout=max(0.0, deadline - now()))
        for rid in ledger.in_flight():  # still unanswered after the client timeout: lost
            rec = ledger.inflight[rid]
            rec.result, rec.detail = "lost", "still unanswered at the end of the run"
            ledger.done(rec)
        lines, status = report(rig, ledger, faults, t0[0], args, now() - t_start)
        with (rig.dir / "requests.jsonl").open("w") as f:
            for rec in ledger.records:
                f.write(json.dumps({**asdict(rec), "hashes": len(rec.hashes)}) + "\n")
        print("\n".join(lines), flush=True)
        keep = keep or status != 0
        return status
    except KeyboardInterrupt:
        print("interrupted: stopping everything", flush=True)
        keep = True
        return 130
    except Exception:
        keep = True
        raise
    finally:
        stop_clients.set()
        if chaos is not None:
            chaos.stopping.set()
        rig.close()
        if keep:
            print(f"run folder kept: {rig.dir} (process logs, requests.jsonl)", flush=True)
        else:
            shutil.rmtree(rig.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds of load and faults (default 150; 32 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke test of under a minute")
    p.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    p.add_argument("--seed", type=int, default=1, help="fault plan and workload (default 1)")
    p.add_argument("--show", type=int, default=20, help="lost/duplicated requests to list")
    p.add_argument("--show-logs", type=int, default=1,
                   help="1: under each listed request, its lines from the process logs")
    p.add_argument("--keep", action="store_true", help="keep the run folder even when clean")
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 32.0 if args.quick else 150.0
    sys.exit(run(args))


if __name__ == "__main__":
    main()
