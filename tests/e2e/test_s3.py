"""The S3 path against a real SeaweedFS: images stored by the worker, presigned URLs fetched."""

from __future__ import annotations

import io
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image

from core.settings import CommonSettings
from core.storage import S3Storage, StorageError, make_storage
from tests.conftest import FAST, Stack
from tests.support import Gateway, SeaweedS3, start_worker, stop, wait_ready


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    yield s3
    s3.stop()


def _storage(s3: SeaweedS3, bucket: str, ttl: int = 3600) -> S3Storage:
    env = {k.removeprefix("EASEL_").lower(): v for k, v in s3.env(bucket).items()}
    storage = make_storage(CommonSettings(**env, url_ttl_seconds=ttl))
    assert isinstance(storage, S3Storage)
    deadline = time.time() + 30
    while True:  # SeaweedFS opens the port before its filer is ready
        try:
            storage.ensure_bucket()
            return storage
        except Exception as e:
            if time.time() > deadline:
                raise AssertionError(f"bucket not made: {e}\n{s3.tail()}") from e
            time.sleep(0.5)


def test_put_get_presigned_url(seaweed: SeaweedS3) -> None:
    storage = _storage(seaweed, "unit")
    storage.put("images/abc/0.png", b"\x89PNG-bytes", "image/png")
    assert storage.get("images/abc/0.png") == b"\x89PNG-bytes"
    url = storage.url("images/abc/0.png", "")
    assert "X-Amz-Signature" in url
    with urllib.request.urlopen(url) as r:  # no credentials beyond the signature
        assert r.read() == b"\x89PNG-bytes"
    with pytest.raises(urllib.error.HTTPError):  # a tampered signature is refused
        urllib.request.urlopen(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    with pytest.raises(StorageError):
        storage.get("images/missing/0.png")


def test_expired_presigned_url_is_refused(seaweed: SeaweedS3) -> None:
    storage = _storage(seaweed, "unit", ttl=1)
    storage.put("images/ttl/0.png", b"x", "image/png")
    url = storage.url("images/ttl/0.png", "")
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url)


def test_generation_through_s3(stack: Stack, seaweed: SeaweedS3) -> None:
    _storage(seaweed, "easel-e2e")
    env = dict(stack.env, **seaweed.env("easel-e2e"))
    # A separate pipeline queue would be cleaner; sharing Redis is fine because this worker and
    # gateway use the same storage and the main worker only serves jobs it can store too.
    redis_env = dict(env, EASEL_REDIS_URL=stack.redis.url.replace("/0", "/1"))
    worker: subprocess.Popen | None = start_worker(redis_env, "s3-worker")
    gateway = Gateway(redis_env).start()
    try:
        wait_ready(gateway.base_url)
        import openai

        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x", max_retries=0)
        r = client.images.generate(prompt="a cyan circle", size="256x256", model="dall-e-2",
                                   extra_body=FAST)
        url = r.data[0].url
        assert url and url.startswith(seaweed.endpoint) and "X-Amz-Signature" in url
        with urllib.request.urlopen(url) as resp:
            assert Image.open(io.BytesIO(resp.read())).size == (256, 256)
    finally:
        gateway.stop()
        stop(worker)


def test_storage_outage_is_a_clean_error_and_recovers(stack: Stack, tmp_path_factory:
                                                      pytest.TempPathFactory) -> None:
    # Restarted mid-test: a short master election and no pre-stop wait keep that in seconds.
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweed-outage"), extra_args=[
        "-master.electionTimeout=1s", "-volume.preStopSeconds=0"]).start()
    try:
        _storage(s3, "outage")
        # No storage patience: this test is about the clean error when an outage outlasts it.
        env = dict(stack.env, **s3.env("outage"), EASEL_JOB_RETRIES="0",
                   EASEL_STORAGE_PATIENCE_SECONDS="0",
                   EASEL_REDIS_URL=stack.redis.url.replace("/0", "/2"))
        worker = start_worker(env, "outage-worker")
        gateway = Gateway(env).start()
        try:
            wait_ready(gateway.base_url)
            import openai

            client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="x",
                                   max_retries=0, timeout=120)

            def generate() -> str | None:
                r = client.images.generate(prompt="a red square", size="256x256",
                                           model="dall-e-2", extra_body=FAST)
                return r.data[0].url

            assert generate()
            s3.stop()
            with pytest.raises(openai.InternalServerError) as failed:
                generate()
            assert "S3" in str(failed.value) or "storage" in str(failed.value).lower()
            assert failed.value.status_code == 503  # a clean, retryable answer
            assert failed.value.response.headers.get("retry-after")
            s3.start()  # same directory and ports: no Easel process is restarted
            _storage(s3, "outage")
            url = generate()
            assert url
            with urllib.request.urlopen(url) as resp:
                assert resp.status == 200
        finally:
            gateway.stop()
            stop(worker)
    finally:
        s3.stop()
