"""Clients of the local stack (scripts/stack.py): google-cloud-storage for fake-gcs-server,
boto3 for moto. The demo, the benchmarks and stack.py itself use these and no other.

fake-gcs-server takes anonymous requests, so the GCS client has no credentials: it gets an
HTTP session of its own instead, which ignores the proxy and netrc settings of the environment
(the stack is on loopback) and keeps one connection per thread of the benchmarks' pools.
"""

from __future__ import annotations

import hashlib

GCS_PROJECT = "test"  # fake-gcs-server ignores it, the client wants one


def gcs_client(endpoint: str, connections: int = 64):
    """A `google.cloud.storage.Client` of the fake-gcs-server at `endpoint`."""
    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    http = requests.Session()
    http.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=connections, pool_maxsize=connections)
    http.mount("http://", adapter)
    return storage.Client(
        project=GCS_PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint.rstrip("/")},
        _http=http,
    )


def boto3_client(service: str, env: dict[str, str], **config):
    """A boto3 client of the stack's moto (`env`: the stack's environment), path-style for S3."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, proxies={}, **config),
    )


class Sha256Sink:
    """A file-like sink that hashes what is written to it: `blob.download_to_file(sink)` streams
    an object of any size through it without holding it."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


def sha256_of(blob) -> tuple[str, int]:
    """sha256 (hex) and size of an object's content, streamed."""
    sink = Sha256Sink()
    blob.download_to_file(sink, timeout=600)
    return sink.hexdigest(), sink.size
