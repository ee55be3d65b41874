"""S3-only behaviour: readiness failures, unreachable endpoints, addressing and secret hygiene."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from obscura.blobs import BlobNotFound, BlobUnavailable, put_bytes
from obscura.blobs.s3 import S3BlobStore, bucket_endpoint
from tests.blobs.conftest import make_s3_store
from tests.blobs.sources import MiB, Source
from tests.fixtures.s3 import S3_REGION, closed_port_url


async def test_check_fails_for_a_missing_bucket(s3_endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket-here", region=S3_REGION, endpoint=s3_endpoint,
                        access_key="AKIDSECRETISH", secret_key="very-secret-value", force_path_style=True)
    with pytest.raises(BlobUnavailable) as info:
        await asyncio.wait_for(store.check(), 5)
    message = str(info.value)
    assert message.startswith("Storage connection failed for bucket no-such-bucket-here: ")
    assert "NoSuchBucket" in message
    assert "very-secret-value" not in message and "AKIDSECRETISH" not in message


async def test_check_of_an_unreachable_endpoint_obeys_the_callers_timeout() -> None:
    store = make_s3_store(closed_port_url(), "some-bucket")
    started = time.monotonic()
    with pytest.raises((TimeoutError, BlobUnavailable)):
        await asyncio.wait_for(store.check(), 0.05)
    assert time.monotonic() - started < 1.0


async def test_check_of_an_unreachable_endpoint_fails_without_retrying() -> None:
    store = make_s3_store(closed_port_url(), "some-bucket")
    started = time.monotonic()
    with pytest.raises(BlobUnavailable) as info:
        await asyncio.wait_for(store.check(), 10)
    assert str(info.value).startswith("Storage connection failed for bucket some-bucket: ")
    assert time.monotonic() - started < 5.0


async def test_operations_on_an_unreachable_endpoint_raise_unavailable() -> None:
    store = make_s3_store(closed_port_url(), "some-bucket", max_retries=0, retry_timeout_s=1)
    with pytest.raises(BlobUnavailable):
        await put_bytes(store, "attachments/x", b"hello")
    with pytest.raises(BlobUnavailable):
        await store.put_stream("attachments/y", Source(8 * MiB, 256 * 1024), max_bytes=10 * MiB)
    with pytest.raises(BlobUnavailable):
        await store.get_stream("attachments/x")
    with pytest.raises(BlobUnavailable):
        await store.head("attachments/x")
    with pytest.raises(BlobUnavailable):
        await store.delete("attachments/x")
    with pytest.raises(BlobUnavailable):
        await store.delete_many(["attachments/x", "attachments/y"])


async def test_bucket_removed_under_a_running_store(s3_endpoint: str, s3_client: Any, s3_bucket: str) -> None:
    store = make_s3_store(s3_endpoint, s3_bucket)
    await store.check()
    s3_client.delete_bucket(Bucket=s3_bucket)
    with pytest.raises(BlobUnavailable):
        await store.check()
    with pytest.raises((BlobUnavailable, BlobNotFound)):
        await store.get_stream("attachments/x")


async def test_objects_are_visible_to_other_s3_clients(s3_endpoint: str, s3_client: Any, s3_bucket: str) -> None:
    store = make_s3_store(s3_endpoint, s3_bucket)
    await store.put_stream("attachments/a", Source(6 * MiB, 1 * MiB), max_bytes=6 * MiB,
                           content_type="application/octet-stream")
    head = s3_client.head_object(Bucket=s3_bucket, Key="attachments/a")
    assert head["ContentLength"] == 6 * MiB
    s3_client.put_object(Bucket=s3_bucket, Key="backups/d/v1", Body=b"x" * 40)
    meta = await store.head("backups/d/v1")
    assert meta is not None and meta.size == 40


def test_virtual_hosted_endpoint_puts_the_bucket_in_the_host() -> None:
    assert bucket_endpoint("https://s3.example.com", "b1") == "https://b1.s3.example.com"
    assert bucket_endpoint("http://minio:9000/", "b1") == "http://b1.minio:9000"
    with pytest.raises(ValueError):
        bucket_endpoint("s3.example.com", "b1")


def test_error_summaries_drop_bodies_and_secrets() -> None:
    store = S3BlobStore("bkt", endpoint="http://127.0.0.1:1", access_key="AKIDLEAK",
                        secret_key="s3cr3t", force_path_style=True)
    body = ("Generic S3 error: request failed for AKIDLEAK: 403 Forbidden: <?xml version=\"1.0\"?>"
            "<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message>"
            "<AWSAccessKeyId>AKIDLEAK</AWSAccessKeyId><StringToSign>s3cr3t</StringToSign></Error>")
    assert store.describe(RuntimeError(body)) == "RuntimeError: SignatureDoesNotMatch: bad sig"
    plain = store.describe(RuntimeError("failed for AKIDLEAK with s3cr3t\nDebug source: {s3cr3t}"))
    assert plain == "RuntimeError: failed for *** with ***"
