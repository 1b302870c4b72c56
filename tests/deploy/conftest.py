"""Deployment fixtures: a real S3-compatible server on loopback, and a private Redis database for the broker."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import run_python

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
_REDIS_CLAIM_KEY = "twinsite-tests:claimed-by"
_REDIS_MARKER_KEY = "twinsite-tests:owned"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server (real HTTP, real boto3 on the other side) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Bucket:
    name: str
    client: Any  # a boto3 S3 client with its own credentials, outside Django

    def objects(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture
def s3(settings, s3_endpoint: str) -> Iterator[Bucket]:
    """Switch this test's storage to STORAGE_BACKEND=s3 on a fresh private bucket.

    The storage settings are made by twinsite/settings.py itself, from the same environment
    variables a deployment sets, in a fresh interpreter; assigning them to settings.STORAGES
    makes Django drop its cached storages (django.test.signals.storages_changed), and every
    FileField uses `default_storage`, so the whole app writes to the bucket until the test ends.
    """
    import boto3

    env = {
        "STORAGE_BACKEND": "s3",
        "AWS_STORAGE_BUCKET_NAME": f"twinsite-test-{uuid.uuid4().hex[:12]}",
        "AWS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_ACCESS_KEY_ID": "twinsite-test",
        "AWS_SECRET_ACCESS_KEY": "twinsite-test-secret",
    }
    result = run_python(
        "import json; from django.conf import settings; print(json.dumps(settings.STORAGES['default']))", env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    storage = json.loads(result.stdout.strip().splitlines()[-1])
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=env["AWS_S3_REGION_NAME"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = Bucket(name=env["AWS_STORAGE_BUCKET_NAME"], client=client)
    client.create_bucket(Bucket=bucket.name, ACL="private")
    settings.STORAGE_BACKEND = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    yield bucket
    for key in bucket.objects():
        client.delete_object(Bucket=bucket.name, Key=key)
    client.delete_bucket(Bucket=bucket.name)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis:// URL to a database of the local Redis that nobody else is using.

    django-q2's Redis keys are named after the cluster (`django_q:gpu:q`), the same in every
    checkout, so parallel test runs would steal each other's tasks on one database. Each run
    claims a database (SET NX, expiring) that is empty or was left by a test run that died
    (it carries our marker), and removes everything in it afterwards.
    """
    redis = pytest.importorskip("redis")
    claimed = None
    try:
        for db in range(15, 0, -1):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=2)
            if client.set(_REDIS_CLAIM_KEY, os.getpid(), nx=True, ex=900):
                if client.dbsize() == 1 or client.exists(_REDIS_MARKER_KEY):
                    client.flushdb()
                    client.set(_REDIS_CLAIM_KEY, os.getpid(), ex=900)
                    client.set(_REDIS_MARKER_KEY, "twinsite tests: safe to flush")
                    claimed = (db, client)
                    break
                client.delete(_REDIS_CLAIM_KEY)
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not running at {REDIS_HOST}:{REDIS_PORT}: {exc}")
    if claimed is None:
        pytest.skip("no empty Redis database to claim (1-15 are all in use)")
    db, client = claimed
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    client.flushdb()  # only ours: claimed above


@pytest.fixture
def redis_broker(settings, redis_url: str, monkeypatch) -> str:
    """Make this process queue through Redis, as a web process started with Q_BROKER=redis://… does.

    django-q2 reads Q_CLUSTER once, into django_q.conf.Conf, when it is first imported; its
    brokers look at Conf on every call, so patching the two attributes switches the broker.
    """
    from django_q.conf import Conf

    settings.Q_BROKER = redis_url
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    return redis_url
