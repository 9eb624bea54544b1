"""Keep a script, and everything it starts, on loopback.

Shared by stack.py, demo.py and bench_stream.py: they talk only to the local stack, so any
proxy or cloud configuration inherited from the caller's shell (AWS_ENDPOINT_URL_S3,
AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, a YUBA_* left over from a session) must not
reach them or their children.
"""

from __future__ import annotations

import os


def isolate_environment() -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith(("AWS_", "YUBA_", "GOOGLE_", "CLOUDSDK_")):
            del os.environ[name]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.0/8,localhost"
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
