#!/usr/bin/env python3
"""yuba demo: S3 uploads replicated into GCS, end to end, on a local stack (`make demo`).

What it does, all on loopback (moto for S3 + SQS, fake-gcs-server for GCS; no cloud account):

1. starts a local stack with `scripts/stack.py up` in a fresh temporary state directory;
2. starts the pipeline as it runs in AWS, as three processes: `yuba-ingest` (long-polls the
   S3 event queue, routes objects over 8 MiB to the Fargate queue) and two `yuba-worker`s, one
   per work queue (standing in for the Lambda and the Fargate worker), both configured with
   three image variant profiles (`YUBA_VARIANTS`: large, medium, thumb);
3. generates a handful of sample images with Pillow, deterministically (same bytes every run);
4. uploads them through the S3 API, then polls GCS every 50 ms until each replica is complete
   (its custom metadata carries `yuba-sha256`), downloads each replica and hashes it, and has
   `yuba-reconciler verify --metadata` check the replicas (content by checksums; headers and
   user metadata against the source's; every variant the profiles call for recorded, present
   and made from that content);
5. prints a table (route, integrity, verify, latency from upload to complete replica), then a
   table of the variants each replica's record lists (each read back from GCS and checked with
   Pillow: it decodes, its content type is what it decoded, its size is the recorded one and
   fits the profile's box, its source sha256 is the upload's) or the reason recorded why it got
   none, and a summary; deletes one object in S3 and times the disappearance of its replica and
   its variants;
6. backfill: objects put in S3 before the pipeline existed (their notifications dropped, as
   for a bucket that predates yuba) are found by `yuba-reconciler diff`, repaired by
   `yuba-reconciler backfill` (jobs on the work queues, copied by the running workers), and
   `yuba-reconciler verify` then proves the whole bucket in sync;
7. delivery: starts `yuba-serve` (the delivery origin) on the replica with the workers' profiles
   plus one they never made, and fetches a few URLs over raw HTTP: an original, a stored variant,
   a variant rendered on demand and the same again (now a hit), a revalidation (304), a range
   (206) and the deleted object (404); prints each URL's status, bytes and `x-yuba-served`, checks
   the bytes against the upload (sha256, a range of it; variants decoded by Pillow, within their
   profile's box), then stops it;
8. stops everything (also on Ctrl-C or an error) and exits 0 only if every check passed.

Run it with the project venv after building the binaries (that is what `make demo` does):

    scripts/bootstrap.sh && cargo build --bins && .venv/bin/python scripts/demo.py

Service logs (JSON lines) stay in the state directory, whose path is printed at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from loopback import isolate_environment
from stack_clients import boto3_client, gcs_client, sha256_of

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = ROOT / "target" / "debug"

ROUTE_THRESHOLD_BYTES = 8 * 1024 * 1024
DEFAULT_TIMEOUT = 60.0  # seconds from an upload (or delete) to its complete (or gone) replica
STARTUP_TIMEOUT = 30.0  # stack and pipeline
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 15.0  # per process, after SIGTERM (the pipeline's shutdown grace is 5 s)
SHA256_KEY = "yuba-sha256"
DELETE_KEY = "icons/spinner.gif"
# Objects that were in the bucket before yuba was deployed: only the reconciler finds them.
ARCHIVE_PREFIX = "archive/"
ARCHIVE_OBJECTS = 12

# Image variants, as the workers are configured with them (YUBA_VARIANTS). No prefixes or
# content types: every image the worker can decode gets all three.
VARIANTS = {
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": "large", "width": 1600, "height": 1600, "format": "jpeg", "quality": 80},
        {"name": "medium", "width": 800, "height": 800, "format": "webp", "quality": 75},
        {"name": "thumb", "width": 200, "height": 200, "fit": "cover", "format": "jpeg", "quality": 80},
    ],
}
VARIANTS_KEY = "yuba-variants"
VARIANTS_ERROR_KEY = "yuba-variants-error"

PIPELINE_ENV = {
    "YUBA_LOG_FORMAT": "json",
    "RUST_LOG": "info",
    "YUBA_RECEIVE_WAIT_SECONDS": "1",
    "YUBA_GCS_RETRY_SECONDS": "10",
    "YUBA_SHUTDOWN_GRACE_SECONDS": "5",
}


class DemoError(Exception):
    """A failure worth a clear message (and the tail of the service logs)."""


class Stop(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP, like KeyboardInterrupt on Ctrl-C."""


# --------------------------------------------------------------------------------------------
# environment: loopback only


def print_grid(rows: list[tuple[str, ...]], right: set[int]) -> None:
    """Rows of cells, the first a header underlined; columns in `right` are right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells).rstrip())
        if n == 0:
            print("  " + "  ".join("─" * w for w in widths))


def check_loopback(env: dict[str, str]) -> None:
    for name in ("AWS_ENDPOINT_URL", "YUBA_GCS_ENDPOINT"):
        host = urlsplit(env[name]).hostname or ""
        try:
            ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise DemoError(f"the stack's {name} is {env[name]!r}, not a loopback address; refusing to use it")


# --------------------------------------------------------------------------------------------
# processes


def _own_session_dying_with_us() -> None:
    """preexec_fn: a session of its own (Ctrl-C reaches only the demo, which stops things in
    order), and SIGTERM if the demo dies without cleaning up (Linux)."""
    os.setsid()
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


@dataclass
class Service:
    """One yuba binary, its stderr (JSON lines) going to a log file."""

    label: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_lines(self) -> list[dict]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def jobs_done(self, key: str) -> list[dict]:
        """The worker's "job done" lines for `key`."""
        return [
            line
            for line in self.log_lines()
            if line.get("message") == "job done" and (line.get("span") or {}).get("key") == key
        ]


class Stack:
    """`scripts/stack.py up --exit-on-stdin-eof`: alive while its stdin is open."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.stderr_path = state_dir / "stack.stderr"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        argv = [
            sys.executable,
            str(ROOT / "scripts" / "stack.py"),
            "up",
            "--state-dir",
            str(self.state_dir),
            "--exit-on-stdin-eof",
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=_own_session_dying_with_us,
                close_fds=True,
            )
        # stack.py gives up by itself after 30 s; a line or EOF always comes.
        line = self.proc.stdout.readline()
        if not line.strip():
            raise DemoError(f"the local stack did not start; {self.stderr_path}:\n{tail(self.stderr_path, 30)}")
        self.env = json.loads(line)
        check_loopback(self.env)

    def stop(self) -> int | None:
        p = self.proc
        if p is None:
            return None
        for stream in (p.stdin, p.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # stdin EOF: the stack stops its servers and exits
        return wait_or_kill(p, STOP_TIMEOUT)


def wait_or_kill(p: subprocess.Popen, timeout: float) -> int:
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return -signal.SIGKILL


def check_binaries() -> None:
    for name in ("yuba-ingest", "yuba-worker", "yuba-reconciler", "yuba-serve"):
        if not (BIN_DIR / name).exists():
            raise DemoError(f"{BIN_DIR / name} is missing; build it first with `cargo build --bins`")


def start_service(label: str, binary: str, env: dict[str, str], state_dir: Path) -> Service:
    exe = BIN_DIR / binary
    log_path = state_dir / f"{label}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=_own_session_dying_with_us,
            close_fds=True,
        )
    return Service(label, proc, log_path)


def start_pipeline(stack_env: dict[str, str], state_dir: Path, services: list[Service]) -> None:
    """ingest plus one worker per work queue, appended to `services` as they start."""
    base = {**os.environ, **stack_env, **PIPELINE_ENV}
    for label, binary, extra in (
        ("ingest", "yuba-ingest", {"YUBA_ROUTE_THRESHOLD_BYTES": str(ROUTE_THRESHOLD_BYTES)}),
        (
            "worker-lambda",
            "yuba-worker",
            {"YUBA_QUEUE_URL": stack_env["YUBA_LAMBDA_QUEUE_URL"], "YUBA_VARIANTS": json.dumps(VARIANTS)},
        ),
        (
            "worker-fargate",
            "yuba-worker",
            {"YUBA_QUEUE_URL": stack_env["YUBA_FARGATE_QUEUE_URL"], "YUBA_VARIANTS": json.dumps(VARIANTS)},
        ),
    ):
        services.append(start_service(label, binary, {**base, **extra}, state_dir))


def check_alive(services: list[Service]) -> None:
    for s in services:
        if not s.alive():
            raise DemoError(f"{s.label} exited with code {s.proc.returncode}")


def wait_until_consuming(services: list[Service]) -> None:
    """Each consumer logs "consuming" once it polls its queue."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    waiting = list(services)
    while waiting:
        check_alive(services)
        waiting = [s for s in waiting if not any(line.get("message") == "consuming" for line in s.log_lines())]
        if waiting and time.monotonic() > deadline:
            raise DemoError(f"{', '.join(s.label for s in waiting)} not polling after {STARTUP_TIMEOUT:.0f} s")
        time.sleep(POLL_INTERVAL)


def stop_all(services: list[Service], stack: Stack) -> str:
    """SIGTERM the pipeline (it drains), wait, then close the stack's stdin. Returns a summary."""
    for s in services:
        if s.alive():
            s.proc.send_signal(signal.SIGTERM)
    codes = [f"{s.label} {wait_or_kill(s.proc, STOP_TIMEOUT)}" for s in services]
    code = stack.stop()
    if code is not None:
        codes.append(f"stack {code}")
    return ", ".join(codes)


# --------------------------------------------------------------------------------------------
# sample images


@dataclass
class Sample:
    key: str
    what: str
    data: bytes
    content_type: str
    metadata: dict[str, str]
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


def photo(width: int, height: int, seed: int):
    """A photo-like RGB picture: sky gradient, sun, sea with glints, plus sensor-like noise."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    vertical = Image.linear_gradient("L").resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    img = Image.merge(
        "RGB",
        (
            vertical.point(lambda v: int(255 - v * 0.55)),
            vertical.point(lambda v: int(140 + v * 0.3)),
            radial.point(lambda v: int(255 - v * 0.6)),
        ),
    )
    draw = ImageDraw.Draw(img)
    draw.ellipse((width * 0.6, height * 0.15, width * 0.75, height * 0.35), fill=(255, 200, 90))
    draw.rectangle((0, height * 0.62, width, height), fill=(40, 110, 170))
    for _ in range(300):
        x, y = rng.uniform(0, width), rng.uniform(height * 0.62, height)
        draw.line((x, y, x + rng.uniform(20, 200), y), fill=(200, 230, 255), width=3)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    return Image.blend(img, Image.merge("RGB", (noise, noise, noise)), 0.12)


def encode(img, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def make_samples() -> list[Sample]:
    from PIL import Image, ImageDraw

    big = photo(4000, 3000, seed=2026)
    meta = {"origin": "yuba-demo", "generator": "pillow"}

    rgba = photo(800, 600, seed=7).convert("RGBA")
    rgba.putalpha(Image.radial_gradient("L").resize((800, 600)).point(lambda v: 255 - v))

    grey = photo(1024, 768, seed=11).convert("L")

    frames = []
    for i in range(8):
        frame = Image.new("P", (64, 64), 0)
        frame.putpalette([255, 255, 255, 30, 120, 200] + [0] * 762)
        ImageDraw.Draw(frame).pieslice((4, 4, 60, 60), i * 45, i * 45 + 90, fill=1)
        frames.append(frame)
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)

    return [
        Sample(
            "photos/2026/beach day+sunset ü.jpg",
            "JPEG 4000×3000",
            encode(big, "JPEG", quality=85),
            "image/jpeg",
            {**meta, "camera": "synthetic", "seed": "2026"},
        ),
        Sample(
            "photos/harbour.jpg",
            "JPEG progressive 1600×1200",
            encode(photo(1600, 1200, seed=3), "JPEG", quality=85, progressive=True, optimize=True),
            "image/jpeg",
            {**meta, "seed": "3"},
        ),
        Sample("graphics/logo alpha.png", "PNG RGBA 800×600", encode(rgba, "PNG"), "image/png", meta),
        Sample("scans/grey+scale.png", "PNG grey 1024×768", encode(grey, "PNG"), "image/png", meta),
        Sample(DELETE_KEY, "GIF 64×64, 8 frames", gif.getvalue(), "image/gif", meta),
        Sample(
            "photos/2026/café.webp",
            "WebP 1200×900",
            encode(photo(1200, 900, seed=5), "WEBP", quality=80),
            "image/webp",
            meta,
        ),
        Sample(
            "raw/panorama 20MiB.tiff",
            "TIFF 3072×2304 raw",
            encode(big.resize((3072, 2304)), "TIFF"),
            "image/tiff",
            {**meta, "note": "uncompressed"},
        ),
    ]


# --------------------------------------------------------------------------------------------
# the demo


def metadata(blob) -> dict[str, str]:
    """An object's custom metadata ({} for no object)."""
    return (blob.metadata or {}) if blob is not None else {}


@dataclass
class Replica:
    sample: Sample
    uploaded_at: float
    complete_at: float = 0.0
    info: Blob | None = None  # the GCS object as first seen complete
    final_info: Blob | None = None  # once the worker logged the job done
    downloaded_sha256: str = ""
    route: str = "?"
    streamed: bool | None = None
    findings: list[dict] = field(default_factory=list)  # what `yuba-reconciler verify` found wrong

    @property
    def latency_ms(self) -> float:
        return (self.complete_at - self.uploaded_at) * 1000

    @property
    def sha_ok(self) -> bool:
        return (
            self.info is not None
            and self.sample.sha256 == self.downloaded_sha256 == metadata(self.info).get(SHA256_KEY)
            and self.info.size == len(self.sample.data)
        )

    @property
    def expected_route(self) -> str:
        return "fargate" if len(self.sample.data) > ROUTE_THRESHOLD_BYTES else "lambda"

    @property
    def attrs_ok(self) -> bool:
        """The replica kept the source's Content-Type and user metadata."""
        meta = metadata(self.final_info)
        return (
            self.final_info is not None
            and self.final_info.content_type == self.sample.content_type
            and all(meta.get(k) == v for k, v in self.sample.metadata.items())
        )

    @property
    def verified(self) -> bool:
        return not self.findings


def poll(what: str, probe, since: float, timeout: float, cancel: threading.Event):
    """Calls probe() every POLL_INTERVAL until it returns something: (value, time seen)."""
    while not cancel.is_set():
        value = probe()
        if value is not None:
            return value, time.monotonic()
        if time.monotonic() > since + timeout:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        cancel.wait(POLL_INTERVAL)
    raise DemoError("cancelled")


def watch_replica(gcs: Bucket, replica: Replica, timeout: float, cancel: threading.Event) -> Replica:
    """Waits for the complete replica (its record has the sha256), then downloads and hashes it."""
    name = replica.sample.key

    def complete():
        blob = gcs.get_blob(name)
        return blob if SHA256_KEY in metadata(blob) else None

    replica.info, replica.complete_at = poll(f"the replica of {name!r}", complete, replica.uploaded_at, timeout, cancel)
    replica.downloaded_sha256, _ = sha256_of(replica.info)
    return replica


def wait_for(futures, services: list[Service]) -> list:
    """Results of `futures`, in order, while checking that the pipeline stays up."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=0.2, return_when=concurrent.futures.FIRST_EXCEPTION)
        for f in done:
            f.result()  # raises the first failure
        check_alive(services)
    return [f.result() for f in futures]


def find_job(workers: list[Service], key: str, outcome: str, timeout: float = 5.0) -> tuple[str, dict | None]:
    """Which worker logged the job for `key` (the line comes just after the replica is written)."""
    deadline = time.monotonic() + timeout
    while True:
        for w in workers:
            for line in w.jobs_done(key):
                if line.get("outcome") == outcome:
                    return w.label.removeprefix("worker-"), line
        if time.monotonic() > deadline:
            return "?", None
        time.sleep(POLL_INTERVAL)


def replicate_samples(
    samples: list[Sample], s3, s3_bucket: str, gcs: Bucket, services: list[Service], timeout: float
) -> list[Replica]:
    """Uploads each sample (watching for its replica from the moment the upload returns)."""
    cancel = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(samples)) as pool:
        try:
            futures = []
            for sample in samples:
                s3.put_object(
                    Bucket=s3_bucket,
                    Key=sample.key,
                    Body=sample.data,
                    ContentType=sample.content_type,
                    Metadata=sample.metadata,
                )
                replica = Replica(sample, uploaded_at=time.monotonic())
                futures.append(pool.submit(watch_replica, gcs, replica, timeout, cancel))
            replicas = wait_for(futures, services)
        finally:
            cancel.set()  # stops the other watchers on a failure; a no-op once all are done
    # A replica is complete once its record has the sha256, but the worker may still be touching
    # it up: against fake-gcs-server, which drops the Content-Type of a multipart upload, the
    # worker PATCHes it back just after. So attributes are checked once the job is logged done.
    for r in replicas:
        r.route, job = find_job(services[1:], r.sample.key, "replicated")
        r.streamed = job.get("streamed") if job else None
        r.final_info = gcs.get_blob(r.sample.key)
    return replicas


def verify_replicas(env: dict[str, str], replicas: list[Replica], state_dir: Path, timeout: float) -> str:
    """`yuba-reconciler verify --metadata` of the samples' keys (a manifest): the project's own
    proof of each replica's content (by checksums), of its headers and user metadata (against a
    HEAD of the source), and of its variants (every one the profiles call for is
    recorded, exists, and was made from this content). Each key's findings go to its replica.
    Returns a report line; raises if verify found something about a key it was not given."""
    manifest = state_dir / "samples.manifest"
    manifest.write_text("".join(f"{r.sample.key}\n" for r in replicas))
    t = time.monotonic()
    code, lines = reconciler(env, "verify", "--metadata", "--json", "--manifest", str(manifest), timeout=timeout)
    seconds = time.monotonic() - t
    by_key = {r.sample.key: r for r in replicas}
    summary: dict = {}
    for entry in map(json.loads, lines):
        if entry.get("type") == "summary":
            summary = entry
        elif entry.get("key") in by_key:
            by_key[entry["key"]].findings.append(entry)
        else:
            raise DemoError(f"yuba-reconciler verify reported a key it was not given: {entry}")
    in_sync, verified = summary.get("in_sync", 0), summary.get("verified", 0)
    if code != 0 or verified != len(replicas):
        for r in replicas:
            if r.verified:  # no finding, yet not counted verified: say so rather than mark it ✓
                r.findings.append({"kind": "not verified", "detail": f"exit {code}, summary {summary}"})
    return (
        f"$ yuba-reconciler verify --metadata --manifest <the {len(replicas)} keys>  (exit {code}, {seconds:.1f} s): "
        f"{in_sync} in sync, {verified} proved by checksums, with their attributes and all their variants"
    )


def demo_delete(
    s3, s3_bucket: str, gcs: Bucket, services: list[Service], variant_names: list[str], timeout: float
) -> tuple[str, bool]:
    """Deletes DELETE_KEY in S3 and waits for its replica and its variants (`variant_names`, as
    found in GCS before) to go (raises on a timeout). Returns a report and whether it passed:
    the object is expected to have had variants, so none to watch is a failure."""
    for name in variant_names:  # still there just before the delete: their going means something
        if gcs.get_blob(name) is None:
            raise DemoError(f"variant {name!r} of {DELETE_KEY!r} vanished before the delete")
    # Timed from the request: moto notifies (and the pipeline may finish) before it answers.
    deleted_at = time.monotonic()
    s3.delete_object(Bucket=s3_bucket, Key=DELETE_KEY)
    answered_ms = (time.monotonic() - deleted_at) * 1000

    remaining = [DELETE_KEY, *variant_names]
    gone_at: dict[str, float] = {}

    def all_gone():
        check_alive(services)
        for name in list(remaining):
            if gcs.get_blob(name) is None:
                gone_at[name] = time.monotonic()
                remaining.remove(name)
        return True if not remaining else None

    try:
        poll(
            f"the replica of {DELETE_KEY!r} and its {len(variant_names)} variants to go",
            all_gone,
            deleted_at,
            timeout,
            threading.Event(),
        )
    except DemoError as e:
        raise DemoError(f"{e}; still in GCS: {', '.join(repr(n) for n in remaining)}") from None
    route, _ = find_job(services[1:], DELETE_KEY, "deleted")
    ms = {name: (t - deleted_at) * 1000 for name, t in gone_at.items()}
    report = (
        f"deleted s3://{s3_bucket}/{DELETE_KEY} (S3 answered in {answered_ms:,.0f} ms) → replica gone "
        f"{ms[DELETE_KEY]:,.0f} ms after the request (worker-{route})"
    )
    if variant_names:
        report += f", its {len(variant_names)} variants gone too (by {max(ms[n] for n in variant_names):,.0f} ms)"
        return report, True
    return report + f"\n  ✗ {DELETE_KEY} had no variants in GCS, so their deletion could not be checked", False


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def print_table(replicas: list[Replica]) -> None:
    rows = [("key", "image", "bytes", "route", "copy", "sha256", "attrs", "verify", "latency")]
    for r in replicas:
        copy = {True: "streamed", False: "whole", None: "?"}[r.streamed]
        route = r.route if r.route == r.expected_route else f"{r.route} ✗"
        rows.append(
            (
                r.sample.key,
                r.sample.what,
                f"{len(r.sample.data):,}",
                route,
                copy,
                mark(r.sha_ok),
                mark(r.attrs_ok),
                mark(r.verified),
                f"{r.latency_ms:,.0f} ms",
            )
        )
    print_grid(rows, right={2, 8})
    print(
        f"  (route: the worker that copied it, objects over {mib(ROUTE_THRESHOLD_BYTES)} go to fargate; copy: whole = "
        f"one request, streamed = resumable upload;\n   sha256: source = downloaded replica = {SHA256_KEY}; "
        "attrs: Content-Type and user metadata kept; verify: yuba-reconciler verify finds it in sync, its content\n"
        "   proved by checksums and every variant the profiles call for recorded, present and made from it; "
        "latency: upload returned → complete replica)"
    )
    for r in replicas:
        if r.route != r.expected_route:
            print(
                f"  ✗ {r.sample.key}: handled by worker-{r.route}, expected worker-{r.expected_route} "
                f"(objects over {ROUTE_THRESHOLD_BYTES:,} bytes go to fargate)"
            )
        if not r.sha_ok:
            size = r.info.size if r.info is not None else None
            print(
                f"  ✗ {r.sample.key}: source {r.sample.sha256}, replica {r.downloaded_sha256}, "
                f"{SHA256_KEY} {metadata(r.info).get(SHA256_KEY)}, size {size} (source {len(r.sample.data)})"
            )
        if not r.attrs_ok:
            content_type = r.final_info.content_type if r.final_info is not None else None
            print(
                f"  ✗ {r.sample.key}: contentType {content_type!r} (source {r.sample.content_type!r}), "
                f"metadata {metadata(r.final_info)} (source user metadata {r.sample.metadata})"
            )
        for finding in r.findings:
            print(f"  ✗ {r.sample.key}: yuba-reconciler verify: {finding.get('kind')} ({finding.get('detail', '')})")


@dataclass
class Variant:
    entry: str  # as the replica's record lists it: profile.extension
    blob: Blob | None  # its GCS object, None if missing
    format: str | None = None  # measured in the downloaded bytes
    width: int | None = None
    height: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def profile(self) -> str:
        return self.entry.rpartition(".")[0]


@dataclass
class Variants:
    """What a replica records about its variants, and the variant objects, checked."""

    replica: Replica
    variants: list[Variant] = field(default_factory=list)
    error: str | None = None  # yuba-variants-error as recorded
    problems: list[str] = field(default_factory=list)  # about the record itself

    @property
    def ok(self) -> bool:
        return not self.problems and all(not v.problems for v in self.variants)

    @property
    def error_kind(self) -> str | None:
        return self.error.split(":", 1)[0].strip() if self.error is not None else None


def variant_objects(gcs: Bucket) -> dict[tuple[str, str], Blob]:
    """The bucket's variants by (source key, profile), as their own metadata names them."""
    out = {}
    for blob in gcs.list_blobs():
        meta = metadata(blob)
        if "yuba-variant" in meta:
            out[(meta.get("yuba-source-key", ""), meta["yuba-variant"])] = blob
    return out


def check_variant(v: Variant, sample: Sample) -> None:
    """Evidence of the variant's bytes that does not take yuba's word for it: Pillow decodes
    them, the content type is that of what it decoded, the recorded source sha256 is the one of
    the bytes the demo uploaded, the recorded size is the measured one and fits the profile."""
    from PIL import Image

    meta = metadata(v.blob)
    if meta.get("yuba-source-sha256") != sample.sha256:
        v.problems.append(f"yuba-source-sha256 {meta.get('yuba-source-sha256')!r}, source {sample.sha256}")
    data = v.blob.download_as_bytes()
    if v.blob.size != len(data):
        v.problems.append(f"size {v.blob.size} but {len(data)} bytes downloaded")
    try:
        with Image.open(io.BytesIO(data)) as img:
            v.width, v.height = img.size
            v.format = img.format
    except Exception as e:
        v.problems.append(f"not a readable image: {e}")
        return
    if v.blob.content_type != Image.MIME.get(v.format):
        v.problems.append(f"contentType {v.blob.content_type!r}, the bytes are {v.format}")
    recorded_size = (meta.get("yuba-variant-width"), meta.get("yuba-variant-height"))
    if recorded_size != (str(v.width), str(v.height)):
        v.problems.append(
            f"yuba-variant-width/height {'×'.join(map(str, recorded_size))}, the image is {v.width}×{v.height}"
        )
    profile = next((p for p in VARIANTS["profiles"] if p["name"] == v.profile), None)
    if profile is None:
        v.problems.append(f"no profile is named {v.profile!r}")
        return
    box_w, box_h = profile.get("width"), profile.get("height")
    if not (0 < v.width <= (box_w or v.width) and 0 < v.height <= (box_h or v.height)):
        v.problems.append(f"{v.width}×{v.height} does not fit the {box_w or '∞'}×{box_h or '∞'} box")


def check_variants(replica: Replica, objects: dict[tuple[str, str], Blob]) -> Variants:
    """The variants the replica's record lists, each found by its own metadata and checked; a
    variant object of this source that the record does not list is a problem of the record.
    Which variants an image should have is the worker's rule: yuba-reconciler verify checks it."""
    key = replica.sample.key
    meta = metadata(replica.final_info)
    out = Variants(replica, error=meta.get(VARIANTS_ERROR_KEY))
    for entry in (e for e in meta.get(VARIANTS_KEY, "").split(",") if e):
        v = Variant(entry, objects.get((key, entry.rpartition(".")[0])))
        out.variants.append(v)
        if v.blob is None:
            v.problems.append("no variant object names this source and profile")
        else:
            check_variant(v, replica.sample)
    listed = {v.profile for v in out.variants}
    for (source, profile), blob in objects.items():
        if source == key and profile not in listed:
            out.problems.append(f"{blob.name} is a {profile} variant of it, but {VARIANTS_KEY} does not list it")
    return out


def print_variants_table(checked: list[Variants]) -> None:
    rows = [("key", "variant", "decoded", "size", "bytes", "object", "ok")]
    for c in checked:
        key = c.replica.sample.key
        for v in c.variants:
            size = f"{v.width}×{v.height}" if v.width is not None else "?"
            nbytes = f"{v.blob.size:,}" if v.blob is not None else "—"
            name = v.blob.name if v.blob is not None else "(missing)"
            rows.append((key, v.entry, v.format or "?", size, nbytes, name, mark(not v.problems)))
            key = ""
        if c.error is not None:
            rows.append((key, "—", "", "", "", f"{VARIANTS_ERROR_KEY}: {c.error}", mark(not c.problems)))
        elif not c.variants:
            rows.append((key, "—", "", "", "", "(nothing recorded)", mark(not c.problems)))
    print_grid(rows, right={3, 4})
    boxes = ", ".join(
        f"{p['name']} {p.get('width', '∞')}×{p.get('height', '∞')} {p.get('fit', 'inside')} {p.get('format', 'same')}"
        for p in VARIANTS["profiles"]
    )
    print(
        f"  (profiles: {boxes}; variant: as {VARIANTS_KEY} lists it, the object found by its yuba-source-key and "
        "yuba-variant;\n   decoded, size: what Pillow reads in the downloaded variant; ok: content type = the decoded "
        "format's, yuba-source-sha256 = source sha256,\n   yuba-variant-width/height = measured, fits the profile's "
        f"box; {VARIANTS_ERROR_KEY}: why the worker made none)"
    )
    for c in checked:
        for problem in c.problems:
            print(f"  ✗ {c.replica.sample.key}: {problem}")
        for v in c.variants:
            for problem in v.problems:
                print(f"  ✗ {c.replica.sample.key} {v.entry}: {problem}")


def run(state_dir: Path, stack: Stack, services: list[Service], timeout: float) -> bool:
    print("yuba demo: S3 → GCS replication on a local stack (loopback only)")
    print(f"  state dir  {state_dir}")

    check_binaries()
    t = time.monotonic()
    stack.start()
    env = stack.env
    print(
        f"  stack      S3+SQS {env['AWS_ENDPOINT_URL']}, GCS {env['YUBA_GCS_ENDPOINT']} "
        f"(up in {time.monotonic() - t:.1f} s)"
    )

    s3 = boto3_client("s3", env, retries={"max_attempts": 3})
    gcs = gcs_client(env["YUBA_GCS_ENDPOINT"]).bucket(env["YUBA_GCS_BUCKET"])
    archive = seed_archive(s3, env)
    print(
        f"  archive    {len(archive)} objects put under s3://{env['YUBA_SOURCE_BUCKET']}/{ARCHIVE_PREFIX} "
        f"before the pipeline exists (their notifications dropped, as for a bucket older than yuba)"
    )

    t = time.monotonic()
    start_pipeline(env, state_dir, services)
    wait_until_consuming(services)
    print(
        f"  pipeline   yuba-ingest (objects > {mib(ROUTE_THRESHOLD_BYTES)} → fargate queue), "
        f"yuba-worker × 2 (lambda, fargate queues), polling in {time.monotonic() - t:.1f} s"
    )

    t = time.monotonic()
    samples = make_samples()
    total = sum(len(s.data) for s in samples)
    print(f"  samples    {len(samples)} images, {mib(total)}, generated in {time.monotonic() - t:.1f} s")

    bucket = env["YUBA_SOURCE_BUCKET"]
    print(f"\nuploading to s3://{bucket}, waiting for complete replicas in gs://{env['YUBA_GCS_BUCKET']} ...\n")
    replicas = replicate_samples(samples, s3, bucket, gcs, services, timeout)
    verify_report = verify_replicas(env, replicas, state_dir, timeout)
    print_table(replicas)
    print(f"  {verify_report}")

    sha_ok = all(r.sha_ok for r in replicas)
    attrs_ok = all(r.attrs_ok for r in replicas)
    routes_ok = all(r.route == r.expected_route for r in replicas)
    verify_ok = all(r.verified for r in replicas)
    latencies = [r.latency_ms for r in replicas]
    print(
        f"\n{len(replicas)} objects, {mib(total)} ({total:,} bytes): "
        + ("all sha256 match (source = downloaded replica = yuba-sha256)" if sha_ok else "SHA256 MISMATCH")
        + (", attributes kept" if attrs_ok else ", ATTRIBUTES LOST")
        + ("" if routes_ok else ", WRONG ROUTES")
        + (", verify in sync" if verify_ok else ", VERIFY FOUND DRIFT")
        + f"; latency upload → complete replica p50 {statistics.median(latencies):,.0f} ms, "
        f"max {max(latencies):,.0f} ms"
    )

    print("\nvariants made by the workers (read back from GCS):\n")
    objects = variant_objects(gcs)
    checked = [check_variants(r, objects) for r in replicas]
    print_variants_table(checked)

    variants_ok = all(c.ok for c in checked)
    n_variants = sum(len(c.variants) for c in checked)
    n_images = sum(1 for c in checked if c.variants)
    kinds = sorted({c.error_kind for c in checked if c.error_kind is not None})
    n_failed = sum(1 for c in checked for v in c.variants if v.problems) + sum(1 for c in checked if c.problems)
    failures = f"{len(kinds)} {'kind' if len(kinds) == 1 else 'kinds'} of failure recorded"
    print(
        f"\n{n_variants} variants from {n_images} images ({failures}{': ' + ', '.join(kinds) if kinds else ''})"
        + (
            "; all checked: present, decoded, content types match, made from the source (sha256), within their boxes"
            if variants_ok
            else f"; VARIANT CHECKS FAILED for {n_failed} {'entry' if n_failed == 1 else 'entries'}"
        )
    )

    delete_variants = next((c for c in checked if c.replica.sample.key == DELETE_KEY), None)
    names = [v.blob.name for v in delete_variants.variants if v.blob is not None] if delete_variants else []
    report, delete_ok = demo_delete(s3, bucket, gcs, services, names, timeout)
    print(report)
    backfill_ok = demo_backfill(env, archive, gcs, services, timeout)
    delivered = next(r.sample for r in replicas if r.sample.key == DELIVERY_KEY)
    delivery_ok = demo_delivery(env, state_dir, services, delivered)
    checks = (sha_ok, attrs_ok, routes_ok, verify_ok, variants_ok, delete_ok, backfill_ok, delivery_ok)
    return all(checks)


# --------------------------------------------------------------------------------------------
# backfill: what only the reconciler can find


def seed_archive(s3, env: dict[str, str]) -> dict[str, str]:
    """Puts objects in S3 and drops their notifications; returns key → sha256."""
    archive = {}
    for i in range(ARCHIVE_OBJECTS):
        key = f"{ARCHIVE_PREFIX}{2019 + i // 4}/photo-{i:02d}.jpg" if i % 3 else f"{ARCHIVE_PREFIX}notes/{i:02d}.txt"
        if key.endswith(".jpg"):
            data = encode(photo(640 + 16 * i, 480, seed=100 + i), "JPEG", quality=85)
        else:
            data = f"archived note {i}\n".encode() * (i + 1)
        s3.put_object(Bucket=env["YUBA_SOURCE_BUCKET"], Key=key, Body=data)
        archive[key] = hashlib.sha256(data).hexdigest()
    sqs = boto3_client("sqs", env, retries={"max_attempts": 3})
    sqs.purge_queue(QueueUrl=env["YUBA_EVENTS_QUEUE_URL"])
    return archive


def reconciler(env: dict[str, str], *args: str, timeout: float) -> tuple[int, list[str]]:
    """Runs yuba-reconciler to completion; returns its exit code and its report (stdout)."""
    proc = subprocess.run(
        [str(BIN_DIR / "yuba-reconciler"), *args, "--no-checkpoint"],
        env={
            **os.environ,
            **env,
            **PIPELINE_ENV,
            "YUBA_VARIANTS": json.dumps(VARIANTS),
            "YUBA_ROUTE_THRESHOLD_BYTES": str(ROUTE_THRESHOLD_BYTES),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode not in (0, 1):
        raise DemoError(f"yuba-reconciler {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.returncode, [line for line in proc.stdout.splitlines() if line.strip()]


def demo_backfill(
    env: dict[str, str], archive: dict[str, str], gcs: Bucket, services: list[Service], timeout: float
) -> bool:
    print(
        f"\nbackfill: the {len(archive)} archived objects were never announced; the reconciler lists both "
        "buckets and merge-joins them:\n"
    )
    t = time.monotonic()
    code, lines = reconciler(env, "diff", timeout=timeout)
    print(f"  $ yuba-reconciler diff          (exit {code}, {time.monotonic() - t:.1f} s)")
    for line in lines:
        print(f"    {line}")
    found = {line.split()[1] for line in lines if line.startswith("missing ")}
    t = time.monotonic()
    code_backfill, lines = reconciler(env, "backfill", "--json", timeout=timeout)
    summary = json.loads(lines[-1]) if lines else {}
    routes = sorted({json.loads(line).get("action", "") for line in lines[:-1]})
    print(
        f"\n  $ yuba-reconciler backfill      (exit {code_backfill}, {time.monotonic() - t:.1f} s): "
        f"{summary.get('enqueued', 0)} jobs enqueued ({', '.join(routes)}); the running workers copy them"
    )
    t = time.monotonic()
    pending = dict(archive)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        check_alive(services)
        for key in list(pending):
            if SHA256_KEY in metadata(gcs.get_blob(key)):
                pending.pop(key)
        time.sleep(0.2)
    still = f"; STILL MISSING: {sorted(pending)}" if pending else ""
    print(f"    replicas complete in {time.monotonic() - t:.1f} s{still}")
    shas_ok = all(sha256_of(gcs.blob(key))[0] == sha for key, sha in archive.items() if key not in pending)
    t = time.monotonic()
    code_verify, lines = reconciler(env, "verify", timeout=timeout)
    print(f"\n  $ yuba-reconciler verify        (exit {code_verify}, {time.monotonic() - t:.1f} s)")
    for line in lines:
        print(f"    {line}")
    diff_ok = found == set(archive)
    ok = code == 1 and diff_ok and code_backfill == 0 and not pending and shas_ok and code_verify == 0
    print(
        "\n  backfill: "
        + ("diff found exactly the archived objects" if diff_ok else f"DIFF FOUND {sorted(found)}")
        + (", all repaired, replica sha256 = source sha256, verify in sync" if ok else ", BACKFILL CHECKS FAILED")
    )
    return ok


# --------------------------------------------------------------------------------------------
# delivery: yuba-serve in front of the replica

# The origin knows the workers' profiles plus one they never made: its variants are rendered on
# the first request and written back, so that the next request is a hit.
ON_DEMAND_PROFILE = {"name": "small", "width": 480, "height": 480, "format": "webp", "quality": 70}
SERVE_VARIANTS = {**VARIANTS, "profiles": [*VARIANTS["profiles"], ON_DEMAND_PROFILE]}
DELIVERY_KEY = "photos/2026/beach day+sunset ü.jpg"  # a space, a plus and a ü: all escaped
RANGE_BYTES = 1024


def escape_key(key: str) -> str:
    """`key` as the delivery path spells it (libs/delivery/src/path.rs, `escape_key`): RFC 3986
    unreserved bytes (quote's always-safe set) and `/` literal, every other UTF-8 byte %XX; a key
    with an empty, `.` or `..` segment gets its `/` escaped too, so no browser or CDN resolves it."""
    opaque = any(segment in ("", ".", "..") for segment in key.split("/"))
    return quote(key, safe="" if opaque else "/")


@dataclass
class Fetch:
    """One request to yuba-serve, what it should get (status, x-yuba-served) and what it got."""

    what: str
    path: str
    expect: tuple[int, str]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    served: str = ""
    etag: str = ""
    body: bytes = b""
    ms: float = 0.0
    problems: list[str] = field(default_factory=list)

    def require(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def start_serve(env: dict[str, str], state_dir: Path, services: list[Service]) -> tuple[Service, str]:
    """yuba-serve on a free loopback port; returns it and the address it logged once listening."""
    serve_env = {
        **os.environ,
        **env,
        **PIPELINE_ENV,
        "YUBA_VARIANTS": json.dumps(SERVE_VARIANTS),
        "YUBA_SERVE_ADDRESS": "127.0.0.1:0",
    }
    serve = start_service("serve", "yuba-serve", serve_env, state_dir)
    services.append(serve)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        check_alive(services)
        address = next((line["address"] for line in serve.log_lines() if "address" in line), None)
        if address is not None:
            return serve, address
        if time.monotonic() > deadline:
            raise DemoError(f"yuba-serve not listening after {STARTUP_TIMEOUT:.0f} s")
        time.sleep(POLL_INTERVAL)


def fetch(address: str, f: Fetch) -> Fetch:
    """GET f.path with http.client, which sends the path exactly as given (no normalisation)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=DEFAULT_TIMEOUT)
    t = time.monotonic()
    try:
        conn.request("GET", f.path, headers=f.headers)
        response = conn.getresponse()
        f.body = response.read()
    finally:
        conn.close()
    f.ms = (time.monotonic() - t) * 1000
    f.status, f.served, f.etag = (
        response.status,
        response.getheader("x-yuba-served", ""),
        response.getheader("ETag", ""),
    )
    f.require((f.status, f.served) == f.expect, f"expected {f.expect[0]} with x-yuba-served: {f.expect[1]}")
    return f


def delivery_fetches(address: str) -> list[Fetch]:
    """The demo's requests, in order: the revalidation sends the ETag the render answered with."""
    key = escape_key(DELIVERY_KEY)
    on_demand = f"/_yuba-variants/{ON_DEMAND_PROFILE['name']}/{key}"
    fetches = [
        fetch(address, Fetch("original", f"/{key}", (200, "original"))),
        fetch(address, Fetch("stored variant", f"/_yuba-variants/thumb/{key}", (200, "hit"))),
        fetch(address, Fetch("variant made on demand", on_demand, (200, "rendered"))),
        fetch(address, Fetch("the same again", on_demand, (200, "hit"))),
    ]
    revalidate = {"If-None-Match": fetches[2].etag}
    range_header = {"Range": f"bytes=0-{RANGE_BYTES - 1}"}
    return [
        *fetches,
        fetch(address, Fetch("revalidation (If-None-Match)", on_demand, (304, "hit"), revalidate)),
        fetch(address, Fetch("range of the original", f"/{key}", (206, "original"), range_header)),
        fetch(address, Fetch("deleted in S3 above", f"/{escape_key(DELETE_KEY)}", (404, "not_found"))),
    ]


def image_problem(body: bytes, profile: dict) -> str | None:
    """Why `body` is not an image of the profile's format inside its box, or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(body)) as img:
            (width, height), fmt = img.size, img.format
    except Exception as e:
        return f"not a readable image: {e}"
    if fmt.lower() != profile["format"]:
        return f"a {fmt}, not {profile['format']}"
    if width > profile["width"] or height > profile["height"]:
        return f"{width}×{height} does not fit the {profile['width']}×{profile['height']} box"
    return None


def check_delivery(fetches: list[Fetch], sample: Sample) -> None:
    """The bytes against evidence from outside yuba: the upload's, and Pillow's decoding."""
    original, stored, rendered, again, revalidated, ranged, _ = fetches
    thumb = next(p for p in VARIANTS["profiles"] if p["name"] == "thumb")
    original.require(hashlib.sha256(original.body).hexdigest() == sample.sha256, "not the uploaded bytes")
    for f, profile in ((stored, thumb), (rendered, ON_DEMAND_PROFILE)):
        problem = image_problem(f.body, profile)
        f.require(problem is None, problem or "")
    again.require(again.body == rendered.body, "not the bytes rendered on demand")
    again.require(again.etag == rendered.etag, f"ETag {again.etag}, the render's {rendered.etag}")
    revalidated.require(not revalidated.body, f"a body of {len(revalidated.body)} bytes")
    ranged.require(ranged.body == sample.data[:RANGE_BYTES], f"not the first {RANGE_BYTES} bytes of the upload")


def print_delivery_table(address: str, fetches: list[Fetch]) -> None:
    rows = [("request", "URL", "status", "bytes", "x-yuba-served", "time", "ok")]
    for f in fetches:
        url = f"http://{address}{f.path}"
        rows.append((f.what, url, str(f.status), f"{len(f.body):,}", f.served, f"{f.ms:,.0f} ms", mark(not f.problems)))
    print_grid(rows, right={3, 5})
    print(
        f"  (profiles: the workers' three plus {ON_DEMAND_PROFILE['name']} {ON_DEMAND_PROFILE['width']}×"
        f"{ON_DEMAND_PROFILE['height']} {ON_DEMAND_PROFILE['format']}, which no worker made; ok: the status and "
        "x-yuba-served expected, the original's sha256 = the upload's,\n   the range = its first "
        f"{RANGE_BYTES:,} bytes, variants decoded by Pillow in their profile's format and box, the hit = the "
        "render's bytes and ETag, the 304 without a body)"
    )
    for f in fetches:
        for problem in f.problems:
            print(f"  ✗ {f.what} ({f.path}): {problem}")


def demo_delivery(env: dict[str, str], state_dir: Path, services: list[Service], sample: Sample) -> bool:
    print(f"\ndelivery: yuba-serve serves the replica of {sample.key!r} (and renders what is missing):\n")
    serve, address = start_serve(env, state_dir, services)
    fetches = delivery_fetches(address)
    check_delivery(fetches, sample)
    print_delivery_table(address, fetches)
    serve.proc.send_signal(signal.SIGTERM)
    code = wait_or_kill(serve.proc, STOP_TIMEOUT)
    ok = all(not f.problems for f in fetches) and code == 0
    print(
        f"\n  delivery: {len(fetches)} requests"
        + (", every answer as expected" if all(not f.problems for f in fetches) else ", DELIVERY CHECKS FAILED")
        + f"; yuba-serve stopped (exit {code})"
    )
    return ok


def log_levels(services: list[Service]) -> str:
    """How many warnings and errors the services logged."""
    levels = [line.get("level") for s in services for line in s.log_lines()]
    return f"{levels.count('WARN')} warnings, {levels.count('ERROR')} errors"


def print_log_tails(state_dir: Path, services: list[Service]) -> None:
    for s in services:
        print(f"\n--- {s.log_path} (tail) ---\n{tail(s.log_path)}", file=sys.stderr)
    print(f"\n--- {state_dir / 'stack.stderr'} (tail) ---\n{tail(state_dir / 'stack.stderr')}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a replica may take to appear or go (default {DEFAULT_TIMEOUT:g})",
    )
    args = ap.parse_args(argv)
    # UTF-8 whatever the locale (keys and marks are not ASCII); line-buffered so that the
    # table and the log tails on stderr interleave in order when both go to one pipe.
    sys.stdout.reconfigure(encoding="utf-8", line_buffering=True)
    isolate_environment()

    def on_signal(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t_start = time.monotonic()
    state_dir = Path(tempfile.mkdtemp(prefix="yuba-demo-"))
    stack = Stack(state_dir)
    services: list[Service] = []
    verdict = "FAIL"
    try:
        if run(state_dir, stack, services, args.timeout):
            verdict = "PASS"
    except DemoError as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        print_log_tails(state_dir, services)
    except (KeyboardInterrupt, Stop) as e:
        verdict = "INTERRUPTED"
        print(f"\ninterrupted ({str(e) or 'SIGINT'}); stopping", file=sys.stderr)
    except Exception:
        import traceback

        traceback.print_exc()
        print_log_tails(state_dir, services)
    finally:
        # Stopping is bounded (SIGTERM, then SIGKILL after STOP_TIMEOUT): do not let a second
        # Ctrl-C leave processes behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        t = time.monotonic()
        stopped = stop_all(services, stack)
        print(f"\nstopped in {time.monotonic() - t:.1f} s (exit codes: {stopped or 'nothing was running'})")
        print(
            f"logs: {state_dir}/ — ingest.log, worker-lambda.log, worker-fargate.log, serve.log (JSON lines, "
            f"{log_levels(services)}); moto.log, fake-gcs-server.log, stack.stderr"
        )
    print(f"{verdict} in {time.monotonic() - t_start:.1f} s")
    return {"PASS": 0, "FAIL": 1, "INTERRUPTED": 130}[verdict]


if __name__ == "__main__":
    sys.exit(main())
