"""Settings, read from `EASEL_*` environment variables; each process builds exactly one class."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What the gateway and the workers must agree on: Redis, the catalog and storage."""

    # An empty variable means "the default": compose's `${VAR:-}` passes empty strings through.
    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="ignore", env_ignore_empty=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    models_file: Path | None = None
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path = Path(".easel/files")
    s3_bucket: str = "easel"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    url_ttl_seconds: int = 3600  # presigned / served URLs stay valid this long (OpenAI: 60 min)
    outcome_ttl_seconds: int = 3600
    log_json: bool = False
    # Recovery timings (every process must agree): a worker beats every `heartbeat_seconds`;
    # one silent for `liveness_ttl_seconds` is dead, and its started jobs are handed back to
    # the queue by the next reaper pass (every `reaper_seconds`, in gateways and workers).
    # A killed worker's job is re-run within liveness TTL + reaper period + its render time.
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    liveness_ttl_seconds: float = Field(default=10.0, gt=0)
    reaper_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _beats_fit_in_liveness(self) -> CommonSettings:
        # Two beats must fit in one TTL, or a slow beat would make a live worker look dead.
        if self.liveness_ttl_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("EASEL_LIVENESS_TTL_SECONDS must be at least twice "
                             "EASEL_HEARTBEAT_SECONDS")
        return self


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    # "required": /v1/* needs a key from api_keys; "off" must be chosen explicitly.
    auth: Literal["required", "off"] = "required"
    api_keys: str = ""  # comma-separated name:sha256hex (see `easel hash-key`)
    # Names of EASEL_API_KEYS entries that may use the admin API (/v1/admin/*: load, unload,
    # reload models); empty: nobody. Never open while EASEL_AUTH=off.
    admin_keys: str = ""
    # How long an admin load, unload or catalog reload waits for the workers' answer.
    admin_timeout_seconds: float = Field(default=300.0, gt=0)
    # Base of URLs to locally stored images; empty means "the URL the client called" when its
    # Host is an allowed one, else the address the connection arrived on (never a foreign Host).
    public_url: str = ""
    # Comma-separated Host names this gateway answers to (others get 400: DNS rebinding); "*"
    # accepts any. A loopback bind adds localhost, 127.0.0.1 and ::1; empty on a public bind:
    # any Host. public_url's host is always allowed.
    allowed_hosts: str = ""
    # Auth off on a non-loopback bind exposes the API to the network: refused unless set.
    allow_no_auth_public: bool = False
    # Slow clients (docs/deploy.md#reverse-proxy): a connection must finish its request line and
    # headers within header_timeout_seconds and max_header_bytes, and its body within
    # body_timeout_seconds of the headers; uvicorn answers 503 beyond max_connections.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=2048, ge=1)
    keep_alive_seconds: int = Field(default=5, ge=1)
    # Gateway processes sharing the port (`easel serve` supervises them; cli/serve.py): one
    # process uses one core at most.  0: one per core available, at most 4.  max_connections
    # applies to each; background jobs, batches and the reaper run in the first one only.
    gateway_processes: int = Field(default=0, ge=0, le=64)
    # How long a gateway trusts that a pipeline has a live worker before asking Redis again
    # (a request for a pipeline without one gets 503 at once instead of waiting in the queue).
    worker_check_seconds: float = Field(default=2.0, ge=0)
    request_timeout_seconds: float = 300.0
    job_timeout_seconds: int = 600
    max_body_bytes: int = 1_000_000  # JSON bodies
    max_upload_bytes: int = 64_000_000  # a whole multipart body (edits, variations)
    max_file_bytes: int = 25_000_000  # one uploaded image
    max_image_pixels: int = 4096 * 4096  # checked from the header, before decoding
    # Pixels one request may have decoded: the edited image plus its mask (the other uploaded
    # images are never decoded).  A decoded pixel costs 3-4 bytes, a compressed one far less.
    max_request_pixels: int = 2 * 4096 * 4096
    # Uploads decoded at once by this gateway; the rest wait, so a burst of large uploads
    # costs at most this many decoded images of memory (about 64 MB each at the pixel limit).
    max_concurrent_decodes: int = Field(default=2, ge=1)
    job_retries: int = 2  # re-runs after a failure or a dead worker; then the job fails
    max_queue_depth: int = 200  # per pipeline; beyond it new jobs get 429 + Retry-After
    # Live workers each pipeline should have, for easel_workers_expected and its alert: "2"
    # (every pipeline), "sd15=2,sdxl=1" (per pipeline), or empty: no expectation.
    expected_workers: str = ""
    key_requests_per_minute: int = 120  # per API key (auth on); 0 = unlimited
    key_max_concurrent: int = 8  # jobs in flight per API key (auth on); 0 = unlimited
    # A request's concurrency slot is a lease its gateway renews while the request waits: a
    # gateway that dies stops renewing, and its slots free themselves within this time.
    lease_seconds: float = Field(default=30.0, ge=1)
    # A client that hangs up while waiting: "finish" lets its job complete (images stored, RQ
    # keeps the result); "cancel" takes the job off the queue if no worker has started it.
    on_disconnect: Literal["finish", "cancel"] = "finish"
    # A stream with nothing to send yet says its job's queue place in an SSE comment this often
    # (also a keep-alive for proxies); 0 turns it off.
    stream_status_seconds: float = Field(default=2.0, ge=0)
    # The model of a request that names none (or sends model=""): empty means OpenAI's default,
    # dall-e-2, when the catalog has it, else the catalog's first model.
    default_model: str = ""
    # Edits with more images than their pipeline uses (one, or its `reference_images`):
    # "refuse" answers 400 naming `image`; "first" renders from the first ones and never decodes
    # the others.
    extra_images: Literal["refuse", "first"] = "refuse"
    # JSON edits name images by URL: http(s) ones are fetched with this deadline (the size cap is
    # max_file_bytes); loopback, private and link-local hosts are refused unless allowed here.
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_private_urls: bool = False
    # Moderation (docs/moderation.md): the level of a request that names none, per-key levels
    # ("alice=low,bob=off"; a request's own `moderation` wins), and more policy list files.
    moderation: Literal["auto", "low", "off"] = "auto"
    moderation_keys: str = ""
    moderation_lists: str = ""  # comma-separated paths, format: service/policy/README.txt
    # Prompt rewriting (revised_prompt): an OpenAI-compatible chat endpoint; empty: off.
    rewrite_url: str = ""
    rewrite_model: str = ""
    rewrite_api_key: SecretStr | None = None
    rewrite_timeout_seconds: float = Field(default=10.0, gt=0)
    rewrite_max_concurrent: int = Field(default=4, ge=1)
    rewrite_models: str = "dall-e-3"  # comma-separated model ids whose prompts are rewritten; *
    rewrite_system_prompt_file: Path | None = None  # default: service/policy/rewrite_system_...
    # Files API (docs/async.md): one upload's size cap (streamed to storage, never held in
    # memory), how long a file lives unless `expires_after` says less, and how often expired
    # files are deleted.  With S3 the bucket's own expiry rule also applies (docs/async.md).
    files_max_bytes: int = Field(default=200_000_000, ge=1)
    files_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    files_purge_seconds: float = Field(default=300.0, gt=0)
    # Batch API (docs/async.md): lines one batch may have, how many of its lines are handed to
    # the background runner at once, how often the driver looks at each batch, how long its
    # per-batch lease lasts (another gateway takes a batch over this long after its driver
    # died), and the completion window ("24h" by default; tests shorten it).
    batch_max_lines: int = Field(default=50_000, ge=1)
    batch_max_in_flight: int = Field(default=8, ge=1)
    batch_poll_seconds: float = Field(default=1.0, gt=0)
    batch_lease_seconds: float = Field(default=30.0, gt=0)
    batch_window_seconds: int = Field(default=86400, ge=1)
    # Background jobs (docs/async.md): how long a job and its answer are kept, the lease a
    # gateway's runner holds on a job it runs (another gateway takes the job over this long
    # after the first one died), how often an idle runner looks for work, and how many live and
    # batch-priority jobs one gateway's runner holds at once (batch work queues behind live).
    background_ttl_seconds: int = Field(default=86400, ge=1)
    background_lease_seconds: float = Field(default=30.0, gt=0)
    background_poll_seconds: float = Field(default=0.5, gt=0)
    background_max_live: int = Field(default=64, ge=1)
    background_max_batch: int = Field(default=8, ge=1)
    # Idempotency-Key on POST /v1/... (docs/async.md): how long a key's first answer is
    # replayed to a repeat by the same API key; 0 turns the header off (ignored).
    idempotency_window_seconds: int = Field(default=86400, ge=0)
    # Webhooks (docs/async.md): endpoints every event is posted to (comma-separated), and the
    # seconds before each retry of a failed delivery (their count is the number of retries).
    # `easel webhooks` delivers and signs them (WebhookSettings); the gateway has no secret.
    webhook_urls: str = ""
    webhook_retry_seconds: str = "5,30,120,600,1800,3600"

    @field_validator("webhook_retry_seconds")
    @classmethod
    def _intervals(cls, value: str) -> str:
        if not re.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?", value):
            raise ValueError("EASEL_WEBHOOK_RETRY_SECONDS must be comma-separated whole seconds")
        return value

    def webhook_targets(self) -> list[str]:
        return split_urls(self.webhook_urls)

    def webhook_retry_intervals(self) -> list[int]:
        return [int(v) for v in self.webhook_retry_seconds.split(",") if v.strip()]


    @field_validator("expected_workers")
    @classmethod
    def _counts(cls, value: str) -> str:
        if not re.fullmatch(r"\s*(\d+|[\w.-]+\s*=\s*\d+(\s*,\s*[\w.-]+\s*=\s*\d+)*)?\s*",
                            value):
            raise ValueError("EASEL_EXPECTED_WORKERS must be a count (2) or pipeline=count "
                             "pairs (sd15=2,sdxl=1)")
        return value

    def admin_key_names(self) -> set[str]:
        return {k.strip() for k in self.admin_keys.split(",") if k.strip()}

    def gateway_process_count(self) -> int:
        """gateway_processes, or for 0 one per core this process may use, at most 4."""
        if self.gateway_processes:
            return self.gateway_processes
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(4, cores))

    def expected_worker_counts(self, pipelines: list[str]) -> dict[str, int]:
        text = self.expected_workers.strip()
        if not text:
            return {}
        if "=" not in text:
            return dict.fromkeys(pipelines, int(text))
        pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
        return {name.strip(): int(count) for name, count in pairs}


def split_urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


class WebhookSettings(CommonSettings):
    """`easel webhooks`, the process that delivers webhook events (workers/deliveries.py)."""

    # The endpoints it may post to (the gateway's list: a delivery naming any other is refused),
    # the Standard Webhooks secret (`whsec_` + base64) that signs every delivery, one
    # attempt's deadline, and whether loopback/private/link-local targets are allowed (as
    # EASEL_FETCH_PRIVATE_URLS is for image URLs).
    webhook_urls: str = ""
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_private_targets: bool = False
    name: str = ""

    def webhook_targets(self) -> list[str]:
        return split_urls(self.webhook_urls)


class WorkerSettings(CommonSettings):
    # Comma-separated pipeline names this worker loads and serves; empty means all of them.
    pipelines: str = ""
    # Load pipelines in that order while their weights fit (MB; 0 = no limit). The first always
    # loads; the heartbeat (and so /readyz) lists only the queues actually served.
    memory_budget_mb: int = 0
    threads: int = 1  # torch threads; two busy processes x two threads on two cores run slower
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    name: str = ""
    # GPU settings, all off by default (docs/deploy.md#gpu-settings): channels-last memory layout,
    # torch.compile of the UNet, VAE tiling/slicing for large sizes, model CPU offload.
    channels_last: bool = False
    compile: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    cpu_offload: bool = False
    # CPU workers with float32 weights render under bfloat16 autocast where the CPU computes
    # bfloat16 natively (avx512_bf16 or AMX; ignored elsewhere): about 1.5x faster for the
    # default model at the same checker score (docs/benchmarks.md). Off: bit-for-bit float32.
    cpu_autocast: bool = True
    max_batch_images: int = 8  # cross-request batching; 1 turns it off
    # Images per pipeline call for Batch API work (the batch queues): a live request that arrives
    # waits for the call in progress, so small calls keep live latency near one render; more
    # trades that latency for batch throughput.
    batch_work_images: int = Field(default=1, ge=1)
    # LoRA adapters (docs/models.md) stay loaded in their pipeline, least recently used first
    # out, while their files fit this many MB per pipeline (0 = no limit).
    adapter_memory_mb: int = Field(default=256, ge=0)
    # A pipeline no job has used for this many seconds is unloaded (docs/models.md, model
    # management); 0 = never. The admin API or a restart loads it again.
    idle_unload_seconds: float = Field(default=0.0, ge=0)
    # A put or get that fails is retried with backoff this long before the job fails: a short
    # storage outage should cost a wait, not a job (its retries are shared with worker deaths).
    storage_patience_seconds: float = Field(default=30.0, ge=0)
    max_batch_wait_ms: int = 10  # how long to gather compatible jobs after taking one
    metrics_port: int = 9100  # Prometheus /metrics of this worker; 0 disables it
    # Its listen address: this host only unless Prometheus scrapes from elsewhere (compose and
    # the worker images set 0.0.0.0 inside their container network).
    metrics_host: str = "127.0.0.1"
    # Provenance (docs/provenance.md): C2PA content credentials signed with this certificate
    # chain (PEM, signing certificate first) and its private key; unset: images are unsigned
    # (`easel up` makes a local chain with `easel certs init`).  The algorithm follows the key.
    c2pa_cert_chain: Path | None = None
    c2pa_private_key: Path | None = None
    c2pa_signing_alg: str = ""
    watermark: bool = True  # the invisible watermark, made and detected with watermark_key
    watermark_key: str = "easel"
    # After rendering (docs/moderation.md): "nudenet", "off", "package.module:function", or
    # "auto": NudeNet when it is installed (the worker extra has it; ~15 ms an image on CPU).
    output_classifier: str = "auto"
    output_classifier_threshold: float = Field(default=0.5, ge=0, le=1)

    def pipeline_names(self) -> list[str]:
        return [p.strip() for p in self.pipelines.split(",") if p.strip()]
