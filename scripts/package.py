#!/usr/bin/env python3
"""Build what AWS runs (`make package`): the arm64 Lambda zips and the Fargate image.

    .venv/bin/python scripts/package.py                         # everything, then a CDK synth
    .venv/bin/python scripts/package.py --bins yuba-worker --no-synth   # what `make test` smoke-tests

1. Cross-builds the bins for `aarch64-unknown-linux-gnu` with cargo-lambda and zig (both pinned
   in requirements-dev.txt) and the `dist` profile of Cargo.toml (fat LTO, one codegen unit,
   symbols stripped), with cargo-lambda's own profile overrides off, so that what Cargo.toml
   says is what is built. The target is added with rustup (the toolchain itself is left alone).
2. Zips `yuba-ingest`, `yuba-worker` and `yuba-serve` for `provided.al2023` (the binary as
   `bootstrap`).
3. Builds the Fargate image (`yuba-worker` and `yuba-reconciler`) as an OCI archive, without a
   daemon and without a base image: the same glibc binaries as the zips, the arm64 C runtime
   they need (ld.so, libc, libm, ...) from Debian's pinned cross package, the Mozilla CA
   bundle from the pinned `certifi` wheel, a passwd entry for the non-root user 65532.
4. Writes `target/package/manifest.json` (what the CDK app and the smoke test read: zip paths,
   sizes, the image archive and its digest; paths relative to the package directory, so it can
   be copied elsewhere whole) and prints the sizes.
5. Synthesizes both CDK stages from these artifacts (`--no-synth` skips it).

Everything is reproducible: file times, owners and order are fixed (the commit's time, or
SOURCE_DATE_EPOCH), so the same commit gives byte-identical zips and the same image digest, and
a rebuild changes neither the Lambda code hash nor the task definition.

Exit 0 when everything was built, 1 when a step failed, 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import certifi
import debian

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "package"
VENV_BIN = ROOT / ".venv" / "bin"

TARGET = "aarch64-unknown-linux-gnu"
PROFILE = "dist"  # [profile.dist] in Cargo.toml
LAMBDA_BINS = ("yuba-ingest", "yuba-worker", "yuba-serve")
IMAGE_BINS = ("yuba-worker", "yuba-reconciler")

# The arm64 C runtime the image carries: pinned, since a new Debian build of it would change the
# image digest, so it changes only with this file.
IMAGE_PACKAGES = {"libc6-arm64-cross": "2.36-8cross1"}
# The tools: skopeo reads the archive back, and the smoke tests unzip the zips and run the arm64
# binaries with qemu-user. Any version will do, so none is pinned (a pin of a security-updated
# package would break the build the day Debian replaces it).
TOOL_PACKAGES = ("qemu-user", "skopeo", "unzip")
CROSS_SYSROOT = Path("/usr/aarch64-linux-gnu")
# Where the image keeps the C runtime: the loader at the path the binaries name (PT_INTERP),
# the libraries where Debian's arm64 loader looks by default.
IMAGE_LIB_DIR = "lib/aarch64-linux-gnu"
IMAGE_USER = "65532:65532"
IMAGE_HOME = "/home/nonroot"
IMAGE_CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
IMAGE_REPOSITORY_NAME = "yuba"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class PackageError(Exception):
    pass


class ToolMissing(PackageError):
    pass


def log(msg: str) -> None:
    print(f"package: {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, **kw)
    if p.returncode != 0:
        raise PackageError(f"{' '.join(cmd)} exited {p.returncode}")
    return p


def source_date_epoch() -> int:
    """The one time every file and the image carry: SOURCE_DATE_EPOCH, or HEAD's commit time."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    p = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        raise PackageError("no commit to take the time from: set SOURCE_DATE_EPOCH")
    return int(p.stdout.strip())


def git_revision() -> str:
    p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return p.stdout.strip() + ("-dirty" if dirty else "")


# --- tools ---------------------------------------------------------------------------------


def ensure_debian_packages() -> None:
    """Installs the Debian packages that are missing, the image's at their pinned versions (as
    root, the way CI runs)."""
    pinned = [f"{pkg}={ver}" for pkg, ver in IMAGE_PACKAGES.items()]
    try:
        debian.ensure([*pinned, *TOOL_PACKAGES])
    except debian.NotRoot as e:
        raise ToolMissing(str(e)) from e
    except debian.DebianError as e:
        raise PackageError(str(e)) from e


def ensure_rust_target() -> None:
    """The arm64 standard library, for the toolchain in use (no toolchain is installed or updated)."""
    p = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolMissing("rustup is needed to add the aarch64-unknown-linux-gnu target")
    if TARGET not in p.stdout.split():
        run(["rustup", "target", "add", TARGET])


def cargo_lambda_env() -> dict[str, str]:
    """cargo-lambda and zig from the virtualenv (`python -m ziglang` is how it finds zig), and
    the build's own paths mapped to fixed ones: a binary embeds the paths of its sources (in
    panic locations, C assertions), and a clone elsewhere must build the same bytes."""
    if not (VENV_BIN / "cargo-lambda").exists():
        raise ToolMissing(f"{VENV_BIN / 'cargo-lambda'} is missing: run scripts/bootstrap.sh")
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    maps = [(ROOT, "/yuba"), (cargo_home, "/cargo")]
    triple = TARGET.replace("-", "_")
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RUSTFLAGS": " ".join(f"--remap-path-prefix={src}={dst}" for src, dst in maps),
        f"CFLAGS_{triple}": " ".join(f"-ffile-prefix-map={src}={dst}" for src, dst in maps),
    }


# --- build ---------------------------------------------------------------------------------


def build(bins: list[str]) -> dict[str, Path]:
    cmd = [
        str(VENV_BIN / "cargo-lambda"),
        "lambda",
        "build",
        "--profile",
        PROFILE,
        "--target",
        TARGET,
        "--disable-optimizations",
    ]
    for b in bins:
        cmd += ["--bin", b]
    started = time.monotonic()
    run(cmd, cwd=ROOT, env=cargo_lambda_env())
    log(f"cross-built {', '.join(bins)} in {time.monotonic() - started:.0f} s")
    built = {}
    for b in bins:
        # cargo-lambda moves each binary here from target/<triple>/<profile>/.
        path = ROOT / "target" / "lambda" / b / "bootstrap"
        if not path.exists():
            raise PackageError(f"{path} was not built")
        built[b] = path
    return built


def elf_info(binary: Path) -> tuple[str, list[str]]:
    """The loader a binary names and the shared libraries it needs (readelf, from binutils)."""
    p = subprocess.run(["readelf", "-W", "-l", "-d", str(binary)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolMissing("readelf (binutils) is needed to read the binaries' dependencies")
    interp, needed = None, []
    for line in p.stdout.splitlines():
        if "Requesting program interpreter:" in line:
            interp = line.split(":", 1)[1].strip(" ]")
        elif "(NEEDED)" in line:
            needed.append(line.split("[", 1)[1].rstrip("]"))
    if interp is None:
        raise PackageError(f"{binary} names no program interpreter: not a dynamically linked ELF")
    if "AArch64" not in subprocess.run(["readelf", "-h", str(binary)], capture_output=True, text=True).stdout:
        raise PackageError(f"{binary} is not an AArch64 binary")
    return interp, needed


# --- reproducible archives -----------------------------------------------------------------


def write_zip(path: Path, name: str, content: bytes, epoch: int) -> None:
    """One executable in a zip, with a fixed time and mode: the same bytes give the same zip."""
    # Zip times start in 1980; an older epoch (0 in tests) is clamped there.
    stamp = time.gmtime(max(epoch, 315532800))[:6]
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.external_attr = (0o100755 & 0xFFFF) << 16
    info.create_system = 3  # Unix, so that the mode above is honoured by Lambda's unzip
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(info, content, compresslevel=9)


@dataclass
class Entry:
    path: str  # relative, no leading slash
    data: bytes | None  # None: a directory
    mode: int


def layer_tar(entries: list[Entry], epoch: int) -> bytes:
    """A tar of the entries and every parent directory, sorted, owned by root, with fixed times."""
    dirs = {str(Path(e.path).parents[i]) for e in entries for i in range(len(Path(e.path).parents) - 1)}
    all_entries = {d: Entry(d, None, 0o755) for d in dirs}
    all_entries.update({e.path: e for e in entries})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(all_entries):
            e = all_entries[path]
            info = tarfile.TarInfo(e.path + ("/" if e.data is None else ""))
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = e.mode
            if e.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def image_entries(binaries: dict[str, Path]) -> list[Entry]:
    """The image's files: the binaries, the C runtime they need, CA certificates, passwd."""
    entries = []
    interps, needed = set(), set()
    for name, path in binaries.items():
        interp, libs = elf_info(path)
        interps.add(interp)
        needed.update(libs)
        entries.append(Entry(f"usr/local/bin/{name}", path.read_bytes(), 0o755))
    if len(interps) != 1:
        raise PackageError(f"the binaries name different loaders: {sorted(interps)}")
    interp = interps.pop()
    loader = CROSS_SYSROOT / "lib" / Path(interp).name
    if not loader.exists():
        raise ToolMissing(f"{loader} is missing: apt-get install libc6-arm64-cross")
    entries.append(Entry(interp.lstrip("/"), loader.read_bytes(), 0o755))
    # The loader is also a NEEDED library of its own; it is loaded already.
    for lib in sorted(needed - {Path(interp).name}):
        src = CROSS_SYSROOT / "lib" / lib
        if not src.exists():
            raise PackageError(f"the binaries need {lib}, which Debian's arm64 cross packages do not have")
        entries.append(Entry(f"{IMAGE_LIB_DIR}/{lib}", src.resolve().read_bytes(), 0o755))
    entries.append(Entry(IMAGE_CA_BUNDLE, Path(certifi.where()).read_bytes(), 0o644))
    uid, gid = IMAGE_USER.split(":")
    passwd = f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}:nonroot:{IMAGE_HOME}:/sbin/nologin\n"
    entries.append(Entry("etc/passwd", passwd.encode(), 0o644))
    entries.append(Entry("etc/group", f"root:x:0:\nnonroot:x:{gid}:\n".encode(), 0o644))
    entries.append(Entry(IMAGE_HOME.lstrip("/"), None, 0o755))
    return entries


def write_image(binaries: dict[str, Path], epoch: int, revision: str) -> dict:
    """The OCI image layout (target/package/image/) and its archive, from one layer."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    tar = layer_tar(image_entries(binaries), epoch)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = {
        "architecture": "arm64",
        "os": "linux",
        "created": created,
        "config": {
            "User": IMAGE_USER,
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                f"SSL_CERT_FILE=/{IMAGE_CA_BUNDLE}",
                # The user's home, where the AWS SDK looks for its (absent) config files.
                f"HOME={IMAGE_HOME}",
            ],
            # No entrypoint: the task definitions name the program (yuba-worker, yuba-reconciler).
            "Cmd": ["yuba-worker"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.revision": revision, "org.opencontainers.image.title": "yuba"},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        "history": [{"created": created, "created_by": "scripts/package.py"}],
    }
    config_bytes = canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
    }
    manifest_bytes = canonical_json(manifest)
    digest = sha256(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "arm64", "os": "linux"},
                "annotations": {"org.opencontainers.image.ref.name": IMAGE_REPOSITORY_NAME},
            }
        ],
    }
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json(index),
    }
    for blob in (config_bytes, manifest_bytes, layer):
        files[f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}"] = blob
    layout = OUT / "image"
    shutil.rmtree(layout, ignore_errors=True)
    for rel, data in files.items():
        (layout / rel).parent.mkdir(parents=True, exist_ok=True)
        (layout / rel).write_bytes(data)
    archive = OUT / "yuba-image.oci.tar"
    archive.write_bytes(layer_tar([Entry(rel, data, 0o644) for rel, data in files.items()], epoch))
    return {
        "archive": str(archive.relative_to(OUT)),
        "layout": str(layout.relative_to(OUT)),
        "digest": digest,
        "platform": "linux/arm64",
        "binaries": sorted(binaries),
        "user": IMAGE_USER,
        "layer_bytes": len(layer),
        "unpacked_bytes": len(tar),
    }


def inspect_image(image: dict) -> None:
    """skopeo reads the archive as a registry would receive it, and agrees on the digest."""
    p = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{OUT / image['archive']}"], capture_output=True)
    if p.returncode != 0:
        raise PackageError(f"skopeo cannot read {image['archive']}: {p.stderr.decode().strip()}")
    if sha256(p.stdout) != image["digest"]:
        raise PackageError(f"skopeo reads manifest {sha256(p.stdout)}, not {image['digest']}")


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def synth(manifest: dict) -> None:
    """Both stages from the real artifacts (example GCP configurations where terraform's are
    absent), then a look at what came out: every main stack names the image's digest and
    carries the zips as its Lambda code."""
    cdk = ROOT / "cdk"
    if not (cdk / "node_modules").exists():
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=cdk)
    out = OUT / "cdk.out"  # its own, so that no asset of an earlier synth is looked at
    shutil.rmtree(out, ignore_errors=True)
    run(
        [
            "npx",
            "cdk",
            "synth",
            "--quiet",
            "--no-notices",
            "--output",
            str(out),
            "-c",
            f"yuba:package={OUT}",
            "-c",
            "yuba:exampleGcp=true",
        ],
        cwd=cdk,
    )
    assets = {hashlib.sha256(f.read_bytes()).hexdigest() for f in out.glob("asset.*.zip")}
    for entry in manifest["lambda"].values():
        if hashlib.sha256((OUT / entry["zip"]).read_bytes()).hexdigest() not in assets:
            raise PackageError(f"the synthesized stacks do not carry {entry['zip']} as Lambda code")
    digest = manifest["image"]["digest"]
    mains = sorted(out.glob("assembly-*/*Yuba*.template.json"))
    if not mains:
        raise PackageError(f"no main stack template in {out}")
    for template in mains:
        text = template.read_text()
        if f"@{digest}" not in text:
            raise PackageError(f"{template.relative_to(ROOT)} does not name the image {digest}")
        refused = "NotDeployable" in json.loads(text).get("Rules", {})
        log(
            f"{template.relative_to(ROOT)}: the zips and {digest}"
            + ("; NOT deployable: the GCP configurations are examples (docs/DEPLOY.md, step 1)" if refused else "")
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--bins",
        default=",".join(sorted(set(LAMBDA_BINS) | set(IMAGE_BINS))),
        help="bins to build (default: all of them); zips and the image take those built",
    )
    ap.add_argument("--no-synth", action="store_true", help="skip the CDK synth at the end")
    args = ap.parse_args()
    bins = [b.strip() for b in args.bins.split(",") if b.strip()]
    unknown = set(bins) - set(LAMBDA_BINS) - set(IMAGE_BINS)
    if unknown:
        log(
            f"error: --bins: {', '.join(sorted(unknown))} is not packaged (one of {', '.join(LAMBDA_BINS + IMAGE_BINS)})"
        )
        return 2
    try:
        ensure_debian_packages()
        ensure_rust_target()
        epoch = source_date_epoch()
        revision = git_revision()
        built = build(bins)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "lambda").mkdir(exist_ok=True)
        manifest: dict = {
            "revision": revision,
            "source_date_epoch": epoch,
            "target": TARGET,
            "profile": PROFILE,
            "lambda": {},
            "image": None,
        }
        for name in LAMBDA_BINS:
            if name not in built:
                continue
            content = built[name].read_bytes()
            zip_path = OUT / "lambda" / f"{name}.zip"
            write_zip(zip_path, "bootstrap", content, epoch)
            manifest["lambda"][name] = {
                "zip": str(zip_path.relative_to(OUT)),
                "zip_bytes": zip_path.stat().st_size,
                "unzipped_bytes": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
            log(f"{zip_path.relative_to(ROOT)}: {mib(zip_path.stat().st_size)} zipped, {mib(len(content))} unzipped")
        image_bins = {b: built[b] for b in IMAGE_BINS if b in built}
        if image_bins:
            manifest["image"] = write_image(image_bins, epoch, revision)
            inspect_image(manifest["image"])
            log(
                f"{(OUT / manifest['image']['archive']).relative_to(ROOT)}: {manifest['image']['digest']} "
                f"({mib(manifest['image']['layer_bytes'])} compressed, {mib(manifest['image']['unpacked_bytes'])} unpacked; "
                f"{', '.join(manifest['image']['binaries'])})"
            )
        (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        log(f"wrote {(OUT / 'manifest.json').relative_to(ROOT)}")
        if not args.no_synth:
            if set(manifest["lambda"]) != set(LAMBDA_BINS) or manifest["image"] is None:
                raise PackageError("a synth needs every binary: drop --bins, or add --no-synth")
            synth(manifest)
    except ToolMissing as e:
        log(f"error: {e}")
        return 2
    except PackageError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
