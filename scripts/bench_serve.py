#!/usr/bin/env python3
"""Delivery benchmark (issue 18): yuba-serve's hits and renders on demand, beside a direct GET
of the same object from the GCS server (the floor), on the local stack, loopback only.

    make bench-serve   # = cargo build --bins, cargo build --release -p yuba-serve, then this script

1. starts its own stack (scripts/stack.py), puts the photos of Debian's lomiri-wallpapers-20.04
   (the transform benchmark's, fetched into .cache/) in S3 under `bench/`, and replicates them
   with `yuba-reconciler backfill --inline` (the worker's code) with three stored JPEG q80
   profiles, 1600, 800 and 200 px;
2. starts the release yuba-serve with those profiles plus render-only ones (800 px JPEG q80,
   `r000`, `r001`, ...) that no replica has;
3. hits, measured by wrk (Debian's, pinned; `scripts/bench_serve.lua` writes its p50/p99 as
   JSON): for the smallest photo and its stored 800 px variant, at each connection count, a GET
   through yuba-serve and a direct GET of the same GCS object's media from fake-gcs-server
   (`/storage/v1/b/B/o/NAME?alt=media`), each for --seconds after a warm-up. Before, both answers
   are fetched once and must be the same bytes (and `x-yuba-served` original / hit); during,
   every answer must be 2xx;
4. renders on demand: --renders requests, each for a variant that does not exist yet (a
   render-only profile of one of the photos), split between the --render-at-once levels; every
   answer must be `x-yuba-served: rendered`, a JPEG inside 800×800 (Pillow), and written back (a
   second GET of a sample is a hit, and the bucket holds one object per render);
5. prints the machine, both tables (Markdown) and yuba-serve's CPU and peak RSS; `--json FILE`
   keeps the numbers.

Exit 0 when it ran, 1 when an answer was wrong, 2 on a set-up error; never on timing (the
issue's target, p99 ≤ 1.2× the floor's, is reported, not enforced). Every step is bounded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import io
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import debian
from bench_variants import corpus
from demo import DemoError, check_loopback, escape_key

from bench_stream import LocalStack, SetupError, children_of, cpu_seconds, table, vm_hwm_kib
from stack_clients import boto3_client, gcs_client

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "target" / "release" / "yuba-serve"
RECONCILER = ROOT / "target" / "debug" / "yuba-reconciler"  # seeding only: not measured
LUA = ROOT / "scripts" / "bench_serve.lua"
WRK = "wrk=4.1.0-3+b2"  # the pinned load generator (docs/design/delivery-research.md, § 6)
PREFIX = "bench/"
KEY_TEMPLATE = "_variants/{variant}/{key}"
STORED = [
    {"name": f"s{side}", "width": side, "height": side, "format": "jpeg", "quality": 80} for side in (1600, 800, 200)
]
HIT_PROFILE = "s800"
RENDER_SIDE = 800
P99_TARGET = 1.2
SETUP_TIMEOUT = 300.0
REQUEST_TIMEOUT = 60.0


class WrongAnswer(Exception):
    """An answer that is not what it must be: the benchmark's numbers would mean nothing."""


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def variants_config(render_profiles: int) -> dict:
    renders = [
        {"name": f"r{i:03d}", "width": RENDER_SIDE, "height": RENDER_SIDE, "format": "jpeg", "quality": 80}
        for i in range(render_profiles)
    ]
    return {"key_template": KEY_TEMPLATE, "profiles": STORED + renders}


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET with http.client (the path sent as it is); status, headers (lower-case), body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# set-up: the replicas, and yuba-serve


def seed(env: dict[str, str], photos: list[Path]) -> None:
    """The photos into S3, then replicated with their stored variants by the worker's code."""
    s3 = boto3_client("s3", env, retries={"max_attempts": 3})
    for photo in photos:
        s3.put_object(
            Bucket=env["YUBA_SOURCE_BUCKET"], Key=PREFIX + photo.name, Body=photo.read_bytes(), ContentType="image/jpeg"
        )
    argv = [str(RECONCILER), "backfill", "--inline", "--json", "--no-checkpoint"]
    run_env = {**os.environ, **env, "YUBA_LOG_FORMAT": "json", "YUBA_VARIANTS": json.dumps(variants_config(0))}
    t = time.monotonic()
    p = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=SETUP_TIMEOUT)
    if p.returncode != 0:
        raise SetupError(f"yuba-reconciler backfill --inline exited {p.returncode}: {p.stderr[-2000:]}")
    say(f"replicated {len(photos)} photos with {len(STORED)} variants each in {time.monotonic() - t:.1f} s")


def hit_variant_name(bucket, key: str) -> str:
    """The GCS name of the stored HIT_PROFILE variant of `key`, found by its own record."""
    prefix = KEY_TEMPLATE.split("{variant}")[0] + HIT_PROFILE + "/"
    for blob in bucket.list_blobs(prefix=prefix):
        meta = blob.metadata or {}
        if meta.get("yuba-source-key") == key and meta.get("yuba-variant") == HIT_PROFILE:
            return blob.name
    raise SetupError(f"no stored {HIT_PROFILE} variant of {key!r} after the backfill")


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM to yuba-serve if this script dies without stopping it (Linux)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Serve:
    """yuba-serve (the release build unless --serve) on a free loopback port, its JSON log (with
    the EMF metrics line of every request, as deployed) in the work directory."""

    def __init__(self, binary: Path, env: dict[str, str], variants_file: Path, log_path: Path):
        self.binary = binary
        self.log_path = log_path
        self.env = {
            **os.environ,
            **env,
            "YUBA_LOG_FORMAT": "json",
            "RUST_LOG": "info",
            "YUBA_VARIANTS_FILE": str(variants_file),
            "YUBA_SERVE_ADDRESS": "127.0.0.1:0",
        }
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def __enter__(self) -> Serve:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + 30
        while not self.address:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SetupError(f"yuba-serve did not start listening: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
            self.address = next((line["address"] for line in self.log_lines() if "address" in line), "")
        return self

    def log_lines(self) -> list[dict]:
        lines = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
        return lines

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def close(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# hits: wrk against yuba-serve and the floor


@dataclass
class Target:
    """One object, fetched through yuba-serve and straight from fake-gcs-server."""

    label: str
    name: str  # its GCS name
    size: int
    yuba_url: str
    floor_url: str
    served: str  # the x-yuba-served it must get


def floor_url(env: dict[str, str], name: str) -> str:
    endpoint = env["YUBA_GCS_ENDPOINT"].rstrip("/")
    return f"{endpoint}/storage/v1/b/{env['YUBA_GCS_BUCKET']}/o/{quote(name, safe='')}?alt=media"


def check_target(t: Target) -> None:
    """Both URLs answer 200 with the same bytes, the object's; yuba-serve says how it found it."""
    status, headers, body = get(t.yuba_url)
    floor_status, _, floor_body = get(t.floor_url)
    served = headers.get("x-yuba-served")
    if (status, served, floor_status) != (200, t.served, 200):
        raise WrongAnswer(f"{t.label}: yuba {status} {served}, floor {floor_status} (expected 200 {t.served}, 200)")
    if body != floor_body or len(body) != t.size:
        raise WrongAnswer(f"{t.label}: yuba sent {len(body)} bytes, the floor {len(floor_body)}, the object {t.size}")


@dataclass
class Wrk:
    requests: int
    duration_us: int
    bytes: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float
    errors: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)  # share of a core, by process

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)


def children_cpu_seconds() -> float:
    """CPU time of this script's finished children: wrk's, measured around its run."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, connections: int, seconds: int, work: Path, pids: dict[str, int]) -> Wrk:
    """One wrk run (one thread: the machine has two cores to share with the servers)."""
    report = work / "wrk.json"
    report.unlink(missing_ok=True)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), url]
    before = {label: cpu_seconds(pid) for label, pid in pids.items()}
    children_before = children_cpu_seconds()
    p = subprocess.run(
        argv, env={**os.environ, "WRK_REPORT": str(report)}, capture_output=True, text=True, timeout=seconds + 60
    )
    if p.returncode != 0 or not report.exists():
        raise SetupError(f"wrk exited {p.returncode}: {p.stderr[-2000:]}")
    result = Wrk(**json.loads(report.read_text()))
    wall = result.duration_us / 1e6
    result.cpu = {label: (cpu_seconds(pid) - before[label]) / wall for label, pid in pids.items()}
    result.cpu["wrk"] = (children_cpu_seconds() - children_before) / wall
    if any(result.errors.values()):
        raise WrongAnswer(f"wrk {url} with {connections} connections: errors {result.errors}")
    return result


@dataclass
class HitRow:
    target: Target
    connections: int
    floor: Wrk
    yuba: Wrk

    @property
    def p99_ratio(self) -> float:
        return self.yuba.p99_us / self.floor.p99_us


def bench_hits(targets: list[Target], args, work: Path, pids: dict[str, int]) -> list[HitRow]:
    rows = []
    for connections in args.connections:
        for t in targets:
            measured = {}
            for who, url in (("floor", t.floor_url), ("yuba", t.yuba_url)):
                wrk(url, connections, args.warmup, work, pids)  # warm-up, discarded
                measured[who] = wrk(url, connections, args.seconds, work, pids)
            row = HitRow(t, connections, measured["floor"], measured["yuba"])
            say(
                f"{t.label}, wrk -c{connections}: p99 floor {ms(row.floor.p99_us)} ms, "
                f"yuba {ms(row.yuba.p99_us)} ms (×{row.p99_ratio:.2f})"
            )
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# renders on demand


@dataclass
class Render:
    path: str
    ms: float
    status: int
    served: str
    content_type: str
    body: bytes


@dataclass
class RenderRow:
    at_once: int
    renders: list[Render]
    wall_s: float
    serve_cpu_s: float
    gcs_cpu_s: float

    @property
    def rate(self) -> float:
        return len(self.renders) / self.wall_s

    def percentile(self, p: int) -> float:
        return statistics.quantiles([r.ms for r in self.renders], n=100, method="inclusive")[p - 1]


def render_once(serve: Serve, path: str) -> Render:
    t = time.monotonic()
    status, headers, body = get(serve.url(path))
    return Render(
        path,
        (time.monotonic() - t) * 1000,
        status,
        headers.get("x-yuba-served", ""),
        headers.get("content-type", ""),
        body,
    )


def render_paths(keys: list[str], total: int) -> list[str]:
    """`total` distinct variants no replica has: profile-major, so each slice of len(keys)
    renders every photo once."""
    return [f"/_yuba-variants/r{i // len(keys):03d}/{escape_key(keys[i % len(keys)])}" for i in range(total)]


def bench_renders(serve: Serve, keys: list[str], args, pids: dict[str, int]) -> list[RenderRow]:
    per_level = max(len(keys), args.renders // len(args.render_at_once) // len(keys) * len(keys))
    paths = iter(render_paths(keys, per_level * len(args.render_at_once)))
    rows = []
    for at_once in args.render_at_once:
        batch = [next(paths) for _ in range(per_level)]
        cpu0, gcs0, t = cpu_seconds(pids["yuba-serve"]), cpu_seconds(pids["fake-gcs"]), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=at_once) as pool:
            renders = list(pool.map(lambda path: render_once(serve, path), batch))
        wall = time.monotonic() - t
        row = RenderRow(
            at_once, renders, wall, cpu_seconds(pids["yuba-serve"]) - cpu0, cpu_seconds(pids["fake-gcs"]) - gcs0
        )
        say(f"renders, {at_once} at once: {len(renders)} in {wall:.1f} s = {row.rate:.2f}/s")
        rows.append(row)
    return rows


def check_render(r: Render) -> None:
    from PIL import Image

    if (r.status, r.served, r.content_type) != (200, "rendered", "image/jpeg"):
        raise WrongAnswer(f"{r.path}: {r.status} {r.served} {r.content_type} (expected 200 rendered image/jpeg)")
    with Image.open(io.BytesIO(r.body)) as img:
        if img.format != "JPEG" or max(img.size) > RENDER_SIDE:
            raise WrongAnswer(f"{r.path}: a {img.format} of {img.size[0]}×{img.size[1]}")


def check_written_back(serve: Serve, rows: list[RenderRow], bucket) -> None:
    """Each render's object is in the bucket, and a sample of them is now served as a hit."""
    renders = [r for row in rows for r in row.renders]
    stored = sum(1 for _ in bucket.list_blobs(prefix=KEY_TEMPLATE.split("{variant}")[0] + "r"))
    if stored != len(renders):
        raise WrongAnswer(f"{len(renders)} renders on demand, {stored} variant objects written back")
    for r in renders[:: max(1, len(renders) // 10)]:
        again = render_once(serve, r.path)
        if (again.status, again.served, again.body) != (200, "hit", r.body):
            raise WrongAnswer(f"{r.path} again: {again.status} {again.served}, {len(again.body)} bytes")


# --------------------------------------------------------------------------------------------
# report


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    with open("/proc/meminfo") as f:
        mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 2**20:.0f} GiB, Linux {platform.release()}"


def versions(serve: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(serve.stat().st_mtime))
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    return f"{serve} built {built} (work tree at {head.stdout.strip()}); {wrk_v}; fake-gcs-server 1.54.0"


def hits_table(rows: list[HitRow]) -> str:
    out = [
        [
            "object",
            "bytes",
            "connections",
            "req/s floor / yuba",
            "p50 ms floor / yuba",
            "p99 ms floor / yuba",
            "p99 yuba/floor",
            "CPU, yuba run: yuba-serve / fake-gcs / wrk",
        ]
    ]
    for r in rows:
        verdict = "met" if r.p99_ratio <= P99_TARGET else "missed"
        cpu = " / ".join(f"{r.yuba.cpu[k]:.0%}" for k in ("yuba-serve", "fake-gcs", "wrk") if k in r.yuba.cpu)
        out.append(
            [
                r.target.label,
                f"{r.target.size:,}",
                str(r.connections),
                f"{r.floor.rps:,.0f} / {r.yuba.rps:,.0f}",
                f"{ms(r.floor.p50_us)} / {ms(r.yuba.p50_us)}",
                f"{ms(r.floor.p99_us)} / {ms(r.yuba.p99_us)}",
                f"×{r.p99_ratio:.2f} ({verdict})",
                cpu,
            ]
        )
    return table(out)


def renders_table(rows: list[RenderRow]) -> str:
    out = [
        [
            "at once",
            "renders",
            "wall s",
            "renders/s",
            "p50 ms",
            "p99 ms",
            "yuba-serve CPU ms per render",
            "fake-gcs CPU s",
        ]
    ]
    for r in rows:
        out.append(
            [
                str(r.at_once),
                str(len(r.renders)),
                f"{r.wall_s:.1f}",
                f"{r.rate:.2f}",
                f"{r.percentile(50):,.0f}",
                f"{r.percentile(99):,.0f}",
                f"{r.serve_cpu_s / len(r.renders) * 1000:,.0f}",
                f"{r.gcs_cpu_s:.1f}",
            ]
        )
    return table(out)


def report(args, hits: list[HitRow], renders: list[RenderRow], photos: list[Path], peak_kib: int) -> str:
    names = ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in photos)
    return "\n".join(
        [
            f"machine: {machine()}",
            f"build: {versions(args.serve)}",
            f"photos: {names}",
            "",
            f"hits (wrk, closed loop; the floor is a direct GET of the same object from fake-gcs-server; "
            f"target p99 ≤ {P99_TARGET}× the floor's):",
            "",
            hits_table(hits),
            "",
            f"renders on demand (each request a variant no replica had: {RENDER_SIDE} px JPEG q80 of one of the photos):",
            "",
            renders_table(renders),
            "",
            f"yuba-serve peak RSS {peak_kib / 1024:.1f} MiB",
        ]
    )


def write_json(args, hits: list[HitRow], renders: list[RenderRow]) -> None:
    data = {
        "machine": machine(),
        "build": versions(args.serve),
        "hits": [
            {"object": r.target.label, "bytes": r.target.size, "connections": r.connections}
            | {"floor": asdict(r.floor), "yuba": asdict(r.yuba), "p99_ratio": r.p99_ratio}
            for r in hits
        ],
        "renders": [
            {"at_once": r.at_once, "renders": len(r.renders), "wall_s": r.wall_s, "renders_per_s": r.rate}
            | {"p50_ms": r.percentile(50), "p99_ms": r.percentile(99), "serve_cpu_s": r.serve_cpu_s}
            for r in renders
        ],
    }
    args.json.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------


def targets_for(env: dict[str, str], serve: Serve, bucket, key: str) -> list[Target]:
    original = bucket.get_blob(key)
    variant = bucket.get_blob(hit_variant_name(bucket, key))
    return [
        Target("original", key, original.size, serve.url(f"/{escape_key(key)}"), floor_url(env, key), "original"),
        Target(
            f"stored {HIT_PROFILE} variant",
            variant.name,
            variant.size,
            serve.url(f"/_yuba-variants/{HIT_PROFILE}/{escape_key(key)}"),
            floor_url(env, variant.name),
            "hit",
        ),
    ]


def server_pids(stack: LocalStack, serve: Serve) -> dict[str, int]:
    gcs = [pid for pid, name in children_of(stack.proc.pid).items() if "fake-gcs" in name]
    if len(gcs) != 1:
        raise SetupError(f"fake-gcs-server is not one of the stack's processes: {children_of(stack.proc.pid)}")
    return {"yuba-serve": serve.proc.pid, "fake-gcs": gcs[0]}


def run(args, work: Path) -> str:
    photos = corpus()
    photos.sort(key=lambda p: p.stat().st_size)
    keys = [PREFIX + p.name for p in photos]
    with LocalStack(work) as stack:
        env = stack.env
        check_loopback(env)
        seed(env, photos)
        bucket = gcs_client(env["YUBA_GCS_ENDPOINT"]).bucket(env["YUBA_GCS_BUCKET"])
        variants_file = work / "variants.json"
        variants_file.write_text(json.dumps(variants_config(math.ceil(args.renders / len(keys)))))
        with Serve(args.serve, env, variants_file, work / "serve.log") as serve:
            pids = server_pids(stack, serve)
            targets = targets_for(env, serve, bucket, keys[0])
            for t in targets:
                check_target(t)
            hits = bench_hits(targets, args, work, pids)
            renders = bench_renders(serve, keys, args, pids)
            for r in (r for row in renders for r in row.renders):
                check_render(r)
            check_written_back(serve, renders, bucket)
            peak = vm_hwm_kib(serve.proc.pid)
    if args.json:
        write_json(args, hits, renders)
    return report(args, hits, renders, photos, peak)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 16], help="wrk's, one run each (default 1 16)")
    ap.add_argument("--seconds", type=int, default=10, help="each measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="a discarded wrk run before each (default 2)")
    ap.add_argument("--renders", type=int, default=300, help="renders on demand in all (default 300)")
    ap.add_argument("--render-at-once", type=int, nargs="+", default=[1, 2, 4], help="default 1 2 4")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--serve", type=Path, default=SERVE, help="the yuba-serve to measure (default: the release build)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: yuba-serve and the stack stop
    for binary, build in ((args.serve, "cargo build --release -p yuba-serve"), (RECONCILER, "cargo build --bins")):
        if not binary.exists():
            say(f"{binary} is missing: run `{build}` (or `make bench-serve`)")
            return 2
    try:
        debian.ensure([WRK])
        with tempfile.TemporaryDirectory(prefix="yuba-bench-serve.") as tmp:
            print(run(args, Path(tmp)))
    except WrongAnswer as e:
        say(f"WRONG ANSWER: {e}")
        return 1
    except (SetupError, DemoError, debian.DebianError, subprocess.TimeoutExpired) as e:
        say(f"set-up failed: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
