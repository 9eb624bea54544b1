#!/usr/bin/env python3
"""Variants benchmark: yuba's transform beside vipsthumbnail, on real photos, in one run.

For every JPEG of Debian's `lomiri-wallpapers-20.04` (8–24 MP, baseline and progressive,
CC-BY-SA) both tools make the same three outputs: JPEG q80 inside 1600×1600, 800×800 and
200×200 boxes, metadata stripped.

- yuba: `target/release/examples/render`, one process per image, decoding once for all
  three variants (`libs/transform/examples/render.rs`);
- libvips: `vipsthumbnail`, which makes one output per run, so three runs per image.

Per image and in total it prints wall time, CPU time, peak RSS and output bytes of each tool and
the ratio yuba / vipsthumbnail; then the throughput in images/s with one image at a time
(single-threaded: `VIPS_CONCURRENCY=1`, and yuba is single-threaded) and with as many images at
once as there are cores. Timing never fails the script; a missing or empty output does.

    make bench-variants   # builds the example, then runs this script
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS_PACKAGE = "lomiri-wallpapers-20.04"
CORPUS_DIR = ROOT / ".cache" / "corpus"
RENDER = ROOT / "target" / "release" / "examples" / "render"
SIZES = (1600, 800, 200)
QUALITY = 80
TIME = "/usr/bin/time"

PROFILES = {
    "key_template": "_variants/{variant}/{key}",
    "profiles": [
        {"name": f"s{size}", "width": size, "height": size, "fit": "inside", "format": "jpeg", "quality": QUALITY}
        for size in SIZES
    ],
}


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def corpus() -> list[Path]:
    """The package's JPEGs, fetched with apt and unpacked under .cache/ once."""
    unpacked = CORPUS_DIR / CORPUS_PACKAGE
    if not unpacked.exists():
        CORPUS_DIR.mkdir(parents=True, exist_ok=True)
        say(f"fetching {CORPUS_PACKAGE} with apt-get download")
        subprocess.run(["apt-get", "download", CORPUS_PACKAGE], cwd=CORPUS_DIR, check=True)
        debs = sorted(CORPUS_DIR.glob(f"{CORPUS_PACKAGE}_*.deb"))
        if not debs:
            raise SystemExit(f"apt-get download {CORPUS_PACKAGE} produced no .deb")
        staging = Path(tempfile.mkdtemp(dir=CORPUS_DIR))
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(staging)], check=True)
        staging.rename(unpacked)
    images = sorted(p for p in unpacked.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not images:
        raise SystemExit(f"no JPEGs in {unpacked}")
    return images


def ensure_vipsthumbnail() -> str:
    found = shutil.which("vipsthumbnail")
    if found:
        return found
    say("installing Debian's libvips-tools (vipsthumbnail)")
    subprocess.run(["apt-get", "install", "-y", "-q", "libvips-tools"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("vipsthumbnail")
    if not found:
        raise SystemExit("vipsthumbnail is still missing after installing libvips-tools")
    return found


@dataclass
class Measure:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_kib: int = 0
    output_bytes: int = 0

    def add(self, other: Measure) -> None:
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.peak_rss_kib = max(self.peak_rss_kib, other.peak_rss_kib)
        self.output_bytes += other.output_bytes


def timed(argv: list[str], env: dict[str, str], scratch: Path) -> Measure:
    """Runs one process under GNU time: wall clock from here, CPU and max RSS from time."""
    report = scratch / f"time-{os.getpid()}-{time.monotonic_ns()}"
    started = time.monotonic()
    result = subprocess.run([TIME, "-f", "%M %U %S", "-o", str(report), *argv], env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{argv[0]} failed on {argv[-1]}:\n{result.stderr[-2000:]}")
    rss, user, system = report.read_text().split()[-3:]
    report.unlink()
    return Measure(wall_s=wall, cpu_s=float(user) + float(system), peak_rss_kib=int(rss))


def outputs_size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        if not path.exists() or path.stat().st_size == 0:
            raise SystemExit(f"missing or empty output {path}")
        total += path.stat().st_size
    return total


def run_vips(vips: str, image: Path, out: Path, env: dict[str, str]) -> Measure:
    measure = Measure()
    outputs = []
    for size in SIZES:
        target = out / f"{image.stem}.vips.{size}.jpg"
        outputs.append(target)
        measure.add(timed([vips, "-s", f"{size}x{size}", "-o", f"{target}[Q={QUALITY},strip]", str(image)], env, out))
    measure.output_bytes = outputs_size(outputs)
    return measure


def run_yuba(variants_file: Path, image: Path, out: Path, env: dict[str, str]) -> Measure:
    target = out / f"{image.stem}.yuba"
    target.mkdir(exist_ok=True)
    measure = timed([str(RENDER), "--variants", str(variants_file), "--out", str(target), str(image)], env, out)
    measure.output_bytes = outputs_size(sorted(target.iterdir()))
    if len(list(target.iterdir())) != len(SIZES):
        raise SystemExit(f"yuba made {len(list(target.iterdir()))} outputs for {image}, expected {len(SIZES)}")
    return measure


@dataclass
class Row:
    image: str
    megapixels: float
    progressive: bool
    yuba: Measure = field(default_factory=Measure)
    vips: Measure = field(default_factory=Measure)


def jpeg_facts(image: Path) -> tuple[float, bool]:
    """Megapixels and whether the JPEG is progressive, read from its SOF marker."""
    data = image.read_bytes()
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width * height / 1e6, marker == 0xC2
        i += 2 + length
    return 0.0, False


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def throughput(label: str, work, images: list[Path], workers: int) -> float:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, images))
    elapsed = time.monotonic() - started
    rate = len(images) / elapsed
    say(f"{label}: {len(images)} images in {elapsed:.2f} s with {workers} at once = {rate:.2f} images/s")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--corpus-only",
        action="store_true",
        help="fetch the photos, print their directory, and stop (the load test uploads them)",
    )
    args = parser.parse_args()

    if args.corpus_only:
        print(corpus()[0].parent)
        return 0
    if not RENDER.exists():
        raise SystemExit(f"{RENDER} is missing: run `cargo build --release -p yuba-transform --example render`")
    vips = ensure_vipsthumbnail()
    version = subprocess.run([vips, "--vips-version"], capture_output=True, text=True).stdout.strip()
    images = corpus()
    if args.limit:
        images = images[: args.limit]
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="yuba-bench-variants.") as scratch_name:
        scratch = Path(scratch_name)
        variants_file = scratch / "variants.json"
        variants_file.write_text(json.dumps(PROFILES))
        single = dict(os.environ, VIPS_CONCURRENCY="1")

        rows = []
        for image in images:
            megapixels, progressive = jpeg_facts(image)
            row = Row(image=image.name, megapixels=megapixels, progressive=progressive)
            row.vips = run_vips(vips, image, scratch, single)
            row.yuba = run_yuba(variants_file, image, scratch, single)
            rows.append(row)

        print(
            f"\n{len(images)} photos from {CORPUS_PACKAGE}; outputs: JPEG q{QUALITY} inside {', '.join(f'{s}×{s}' for s in SIZES)}"
        )
        print(
            f"yuba: {RENDER.relative_to(ROOT)} (decodes once)  ·  libvips: vipsthumbnail {version} (one run per output), VIPS_CONCURRENCY=1\n"
        )
        header = f"{'image':<34} {'MP':>5} {'prog':>4} │ {'wall ms':>15} {'ratio':>5} │ {'CPU ms':>15} {'ratio':>5} │ {'peak RSS MiB':>13} {'ratio':>5} │ {'output KiB':>15} {'ratio':>5}"
        print(header)
        print(
            f"{'':<34} {'':>5} {'':>4} │ {'yuba':>7} {'vips':>7} {'':>5} │ {'yuba':>7} {'vips':>7} {'':>5} │ {'yuba':>6} {'vips':>6} {'':>5} │ {'yuba':>7} {'vips':>7} {'':>5}"
        )
        total = Row(image="total", megapixels=sum(r.megapixels for r in rows), progressive=False)
        for row in [*rows, None]:
            if row is None:
                row = total
            else:
                total.yuba.add(row.yuba)
                total.vips.add(row.vips)
            y, v = row.yuba, row.vips
            print(
                f"{row.image[:34]:<34} {row.megapixels:>5.1f} {('yes' if row.progressive else ''):>4} │ "
                f"{y.wall_s * 1000:>7.0f} {v.wall_s * 1000:>7.0f} {ratio(y.wall_s, v.wall_s):>5} │ "
                f"{y.cpu_s * 1000:>7.0f} {v.cpu_s * 1000:>7.0f} {ratio(y.cpu_s, v.cpu_s):>5} │ "
                f"{y.peak_rss_kib / 1024:>6.1f} {v.peak_rss_kib / 1024:>6.1f} {ratio(y.peak_rss_kib, v.peak_rss_kib):>5} │ "
                f"{y.output_bytes / 1024:>7.0f} {v.output_bytes / 1024:>7.0f} {ratio(y.output_bytes, v.output_bytes):>5}"
            )

        print()
        rates = {}
        for workers, label in ((1, "single"), (cores, "all cores")):
            env = single if workers == 1 else dict(os.environ)
            rates[("yuba", label)] = throughput(
                f"yuba, {label}", lambda image, env=env: run_yuba(variants_file, image, scratch, env), images, workers
            )
            rates[("vips", label)] = throughput(
                f"vipsthumbnail, {label}", lambda image, env=env: run_vips(vips, image, scratch, env), images, workers
            )
            print(
                f"throughput, {label} ({workers} at once): yuba {rates[('yuba', label)]:.2f} images/s, "
                f"vipsthumbnail {rates[('vips', label)]:.2f} images/s, "
                f"yuba / vipsthumbnail {rates[('yuba', label)] / rates[('vips', label)]:.2f}"
            )

        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "vips_version": version,
                        "rows": [
                            {
                                "image": r.image,
                                "megapixels": r.megapixels,
                                "progressive": r.progressive,
                                "yuba": r.yuba.__dict__,
                                "vips": r.vips.__dict__,
                            }
                            for r in rows
                        ],
                        "throughput": {f"{tool} {label}": rate for (tool, label), rate in rates.items()},
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
