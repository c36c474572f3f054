"""Compose's S3 side against a real SeaweedFS (the same 4.48 as the image): Easel's identity as
docker-compose.yml writes it, deploy/s3-bucket.sh creating the bucket, ensure_bucket's rule."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from core.settings import CommonSettings
from core.storage import EXPIRY_RULE_ID, S3Storage, make_storage
from tests.deploy.test_compose import seaweedfs_identity
from tests.support import ROOT, SeaweedS3

yaml = pytest.importorskip("yaml")
BUCKET = "easel"  # compose's default EASEL_S3_BUCKET


def _compose_actions() -> list[str]:
    return list(seaweedfs_identity()["identities"][0]["actions"])


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweed"), access_key="easel",
                   secret_key="0123456789abcdef0123", actions=_compose_actions()).start()
    yield s3
    s3.stop()


def _s3_bucket_sh(s3: SeaweedS3) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EASEL_S3_BUCKET=BUCKET,
               SEAWEED_MASTER=f"127.0.0.1:{s3.ports['master']}.{s3.ports['mgrpc']}",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["sh", str(ROOT / "deploy/s3-bucket.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


def _storage(s3: SeaweedS3) -> S3Storage:
    env = {k.removeprefix("EASEL_").lower(): v for k, v in s3.env(BUCKET).items()}
    storage = make_storage(CommonSettings(**env))
    assert isinstance(storage, S3Storage)
    return storage


def _ttl_seconds(s3: SeaweedS3, key: str) -> int:
    url = f"http://127.0.0.1:{s3.ports['filer']}/buckets/{BUCKET}/{key}?metadata=true"
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(json.loads(r.read())["TtlSec"])


def test_bucket_made_inside_seaweedfs_then_easel_works_with_least_privilege(
        seaweed: SeaweedS3) -> None:
    deadline = time.time() + 60
    while (done := _s3_bucket_sh(seaweed)).returncode != 0:  # the filer starts after the port
        assert time.time() < deadline, done.stderr
        time.sleep(1)
    assert "fast path enabled" in done.stdout
    again = _s3_bucket_sh(seaweed)  # compose runs it on every `up`
    assert again.returncode == 0 and "exists" in again.stdout, again.stderr

    storage = _storage(seaweed)
    storage.ensure_bucket()  # s3-init: the bucket exists, the expiration rule is added
    rules = storage.client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert [(r["ID"], r["Expiration"]["Days"]) for r in rules] == [(EXPIRY_RULE_ID, 1)]
    storage.put("images/j/0.png", b"png", "image/png")
    assert storage.get("images/j/0.png") == b"png"
    with urllib.request.urlopen(storage.url("images/j/0.png", ""), timeout=10) as r:
        assert r.read() == b"png"
    assert _ttl_seconds(seaweed, "images/j/0.png") == 86400  # enforced: a volume TTL

    client = storage.client
    for attempt in (lambda: client.create_bucket(Bucket="another"),
                    lambda: client.delete_bucket(Bucket=BUCKET),
                    lambda: client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
                        "Version": "2012-10-17", "Statement": [{
                            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))):
        with pytest.raises(ClientError, match="AccessDenied"):
            attempt()


def test_ensure_bucket_leaves_an_operators_own_lifecycle_rules_alone(seaweed: SeaweedS3) -> None:
    storage = _storage(seaweed)
    while _s3_bucket_sh(seaweed).returncode != 0:
        time.sleep(1)
    theirs = {"ID": "keep-90-days", "Status": "Enabled", "Filter": {"Prefix": ""},
              "Expiration": {"Days": 90}}
    storage.client.put_bucket_lifecycle_configuration(
        Bucket=BUCKET, LifecycleConfiguration={"Rules": [theirs]})
    assert storage.ensure_expiry() is False
    rules = storage.client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert [r["ID"] for r in rules] == ["keep-90-days"]
    storage.client.delete_bucket_lifecycle(Bucket=BUCKET)
    assert storage.ensure_expiry() is True


class _Refusing:
    """A store without lifecycle support, or a key without the right to set a rule."""

    def __init__(self, code: str) -> None:
        self.code = code

    def get_bucket_lifecycle_configuration(self, **kw: Any) -> Any:
        if self.code == "AccessDenied":
            raise ClientError({"Error": {"Code": "NoSuchLifecycleConfiguration"}}, "Get")
        raise ClientError({"Error": {"Code": self.code}}, "GetBucketLifecycleConfiguration")

    def put_bucket_lifecycle_configuration(self, **kw: Any) -> Any:
        raise ClientError({"Error": {"Code": self.code}}, "PutBucketLifecycleConfiguration")


@pytest.mark.parametrize("code", ["NotImplemented", "AccessDenied"])
def test_a_store_that_refuses_the_rule_is_logged_not_fatal(
        code: str, caplog: pytest.LogCaptureFixture) -> None:
    storage = S3Storage("easel", 3600, _Refusing(code))
    with caplog.at_level(logging.WARNING, logger="easel.storage"):
        assert storage.ensure_expiry() is False
    assert "never expire" in caplog.text or "will not expire" in caplog.text
    assert code in caplog.text
