"""The S3 backend (AWS, MinIO, any S3-compatible endpoint) on obstore's S3Store."""

from __future__ import annotations

import datetime
from urllib.parse import urlsplit, urlunsplit

import obstore
from obstore.store import S3Store

from obscura.blobs.obstore_store import ObstoreBlobStore

__all__ = ["S3BlobStore", "bucket_endpoint"]

# A prefix nobody writes under: listing it is the cheapest call that fails for a missing bucket,
# bad credentials or an unreachable endpoint (upstream uses HeadBucket, spec §2.15; a HEAD of an
# object cannot tell a missing bucket from a missing key).
_PROBE_PREFIX = "obscura-readyz"


def bucket_endpoint(endpoint: str, bucket: str) -> str:
    """The virtual-hosted-style endpoint ``scheme://<bucket>.<host>`` for a custom endpoint.

    obstore uses a custom endpoint as is when virtual-hosted style is on, so the bucket must be
    put into the host name here, as the AWS SDKs do when path style is off.
    """
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.netloc:
        raise ValueError("storage endpoint must be an absolute URL such as https://s3.example.com")
    return urlunsplit((parts.scheme, f"{bucket}.{parts.netloc}", parts.path.rstrip("/"), "", ""))


class S3BlobStore(ObstoreBlobStore):
    """Blobs in one S3 bucket. Static keys when given, else the usual AWS environment chain."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str = "us-east-1",
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        force_path_style: bool = False,
        connect_timeout_s: float = 5.0,
        request_timeout_s: float = 300.0,
        max_retries: int = 3,
        retry_timeout_s: float = 15.0,
        **kwargs: object,
    ) -> None:
        config: dict[str, object] = {"region": region}
        if access_key and secret_key:
            config["access_key_id"] = access_key
            config["secret_access_key"] = secret_key
        config["virtual_hosted_style_request"] = not force_path_style
        if endpoint:
            config["endpoint"] = endpoint if force_path_style else bucket_endpoint(endpoint, bucket)
        client = {
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
            "connect_timeout": datetime.timedelta(seconds=connect_timeout_s),
            # The whole request, body included: a download streams within this budget.
            "timeout": datetime.timedelta(seconds=request_timeout_s),
        }
        retry = {"max_retries": max_retries, "retry_timeout": datetime.timedelta(seconds=retry_timeout_s)}
        store = S3Store(bucket, client_options=client, retry_config=retry, **config)
        # Readiness must answer fast and honestly: no retries, a short overall timeout.
        probe_client = dict(client, timeout=datetime.timedelta(seconds=max(connect_timeout_s, 5.0)))
        self._probe_store = S3Store(
            bucket, client_options=probe_client,
            retry_config={"max_retries": 0, "retry_timeout": datetime.timedelta(seconds=1)}, **config,
        )
        super().__init__(store, name=bucket, secrets=(access_key or "", secret_key or ""), **kwargs)

    async def _probe(self) -> None:
        await obstore.list_with_delimiter_async(self._probe_store, _PROBE_PREFIX)
