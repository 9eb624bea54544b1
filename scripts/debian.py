#!/usr/bin/env python3
"""Debian packages the project's tools need, installed by the project's own files.

    .venv/bin/python scripts/debian.py chromium            # what `make browser` runs
    .venv/bin/python scripts/debian.py libc6-arm64-cross=2.36-8cross1 skopeo

    import debian
    debian.ensure(["chromium"])

A package is `NAME` (any version will do: a pin of a security-updated package would break the
day Debian replaces it) or `NAME=VERSION` (exactly that version, for what goes into an artifact
that must be reproducible). Only the packages that are missing (or at another version) are
installed, with apt-get as root and without recommends; the package lists are refreshed once
when an install fails (stale lists on a fresh machine). Not root: nothing is installed, and the
error names the apt-get command to run.

Exit 0 when every package is there, 1 when apt-get failed, 2 when not root and some are missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence


class DebianError(Exception):
    """apt-get failed."""


class NotRoot(DebianError):
    """Packages are missing and this process may not install them."""


def log(msg: str) -> None:
    print(f"debian: {msg}", flush=True)


def installed_version(name: str) -> str | None:
    """The installed version of `name`, or None when it is not installed."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def missing(packages: Sequence[str]) -> list[str]:
    """Those of `packages` (`NAME` or `NAME=VERSION`) that are not installed as asked."""
    wanted = []
    for package in packages:
        name, _, version = package.partition("=")
        have = installed_version(name)
        if have is None or (version and have != version):
            wanted.append(package)
    return wanted


def ensure(packages: Sequence[str]) -> None:
    """Installs those of `packages` that are missing; raises NotRoot or DebianError."""
    wanted = missing(packages)
    if not wanted:
        return
    if os.geteuid() != 0:
        raise NotRoot(f"install these Debian packages (as root): apt-get install {' '.join(wanted)}")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("$ " + " ".join(cmd))
    if subprocess.run(cmd, env=env).returncode == 0:
        return
    # Stale package lists on a fresh machine: refresh once.
    for again in (["apt-get", "update", "-q"], cmd):
        log("$ " + " ".join(again))
        code = subprocess.run(again, env=env).returncode
        if code != 0:
            raise DebianError(f"{' '.join(again)} exited {code}")


def main(argv: Sequence[str]) -> int:
    if not argv or any(arg.startswith("-") for arg in argv):
        asked = list(argv) in (["-h"], ["--help"])
        print(__doc__, file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    try:
        ensure(argv)
    except NotRoot as e:
        log(f"error: {e}")
        return 2
    except DebianError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
