"""Inputs and previews live under an id of their own, and only results ever get a URL."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from core.jobs import RenderJob, image_key, input_key, partial_key
from core.storage import LocalStorage, S3Storage, StorageError

RESULT = image_key("a" * 32, 0, "png")
PRIVATE = [input_key("b" * 32, "image0"), input_key("b" * 32, "mask"), partial_key("b" * 32, 0)]


def test_a_job_payload_carries_a_private_id_unrelated_to_its_job_id() -> None:
    jobs = [RenderJob(job_id="a" * 32, model="m", pipeline="p", width=64, height=64, n=1,
                      seeds=[1], steps=1, guidance=1.0) for _ in range(2)]
    assert jobs[0].private_id != jobs[0].job_id
    assert jobs[0].private_id != jobs[1].private_id  # random, not derived from anything
    assert len(jobs[0].private_id) >= 32


def test_local_urls_only_for_results(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.url(RESULT, "http://h/").endswith(f"/files/{RESULT}")
    for key in PRIVATE:
        with pytest.raises(StorageError):
            storage.url(key, "http://h/")


def test_presigned_urls_only_for_results() -> None:
    # Presigning is local computation: no S3 server is contacted.
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s")
    storage = S3Storage("easel", 60, client)
    assert "Signature=" in storage.url(RESULT, "")
    for key in PRIVATE:
        with pytest.raises(StorageError):
            storage.url(key, "")
