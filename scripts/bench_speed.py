"""Benchmark ``stacker merge`` against decoding alone and a plain one-slice-at-a-time reference.

Generates synthetic focal stacks (cached in ``--workdir``), then times each of these in a
fresh subprocess, recording wall time and peak RSS (via ``/usr/bin/time`` when present):

* ``decode``: ``stacker.io.read_image`` on every slice, nothing else (the floor);
* ``reference``: one thread, one slice at a time: decode, float32 grey, two Gaussian
  filters (sigma 2) for the local variance, running argmax, pick of composite pixels,
  and the composite written as PNG like ``merge -o out.png`` does;
* ``merge``: ``python -m stacker merge FILES -o out.png --quiet`` (plus one run per
  extra ``--methods`` value, passed as ``--method NAME``).

All runs happen in one invocation so their ratios are comparable on a noisy machine.

Usage::

    python scripts/bench_speed.py                     # 3000x2000 RGB JPEG, 20 and 40 slices
    python scripts/bench_speed.py --quick             # tiny smoke run, a few seconds
    python scripts/bench_speed.py --format tif --slices 10 30 --markdown /tmp/bench.md
    python scripts/bench_speed.py --methods default fast --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import tifffile
from PIL import Image
from scipy import ndimage

import stacker
from stacker.io import read_image, write_image

TIME = "/usr/bin/time"
# Fallback when /usr/bin/time is missing: a fresh wrapper's RUSAGE_CHILDREN covers exactly
# its one child, so its ru_maxrss (KiB on Linux) is that child's peak RSS.
WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[2:]).returncode\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(f'{time.perf_counter() - t:.2f} {rss}\\n')\n"
    "sys.exit(code)\n"
)
DECODE = "import sys\nfrom stacker.io import read_image\nfor p in sys.argv[1:]: read_image(p)\n"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class Run:
    """One measured subprocess: wall time in s and peak RSS in MB (None if it failed)."""

    wall: float | None
    rss: float | None


def texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Return a textured RGB float32 image in [0, 1]: multi-scale noise, edges and tints."""

    def noise(scale: int, channels: int = 1) -> np.ndarray:
        small = rng.standard_normal((height // scale + 2, width // scale + 2, channels))
        up = ndimage.zoom(small.astype(np.float32), (scale, scale, 1), order=1)
        return up[:height, :width]

    luma = (
        0.5
        + 0.22 * np.tanh(3 * noise(24))  # blobs with sharp edges
        + 0.10 * noise(96)
        + 0.08 * noise(4)
        + 0.04 * noise(1)  # pixel-level grain
    )
    tint = 1 + 0.25 * noise(160, 3)
    return np.clip(luma * tint, 0, 1)


def make_stack(directory: Path, n: int, width: int, height: int, fmt: str) -> list[Path]:
    """Write `n` slices focused at different depths (reused if all `n` already exist).

    Each slice blends the sharp texture with one blurred copy through a Gaussian ridge
    along a tilted plane, so the sharp band sweeps across the frame from slice to slice.
    """
    paths = [directory / f"slice_{k:03d}.{fmt}" for k in range(n)]
    if sorted(directory.glob(f"slice_*.{fmt}")) == paths:
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("slice_*"):
        old.unlink()
    rng = np.random.default_rng(0)
    sharp = texture(height, width, rng)
    blurred = ndimage.gaussian_filter(sharp, sigma=(6, 6, 0))
    detail = sharp - blurred
    y, x = np.ogrid[0:1 : height * 1j, 0:1 : width * 1j]
    plane = (0.7 * x + 0.3 * y).astype(np.float32)
    for k, path in enumerate(paths):
        centre = k / (n - 1) if n > 1 else 0.5
        weight = np.exp(-(((plane - centre) / 0.12) ** 2))
        image = blurred + weight[..., None] * detail
        image += rng.standard_normal(image.shape, dtype=np.float32) * 0.01  # sensor noise
        tmp = path.with_suffix(".tmp")
        if fmt == "jpg":
            pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp, format="JPEG", quality=92)
        else:
            gray = np.clip(image @ LUMA, 0, 1)
            tifffile.imwrite(tmp, np.rint(gray * 65535).astype(np.uint16))
        os.replace(tmp, path)
    return paths


def reference_stack(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Plain single-threaded stacking, one slice in memory at a time.

    Returns the composite and the per-pixel index of the sharpest slice.
    """
    best = index = composite = None
    for k, path in enumerate(paths):
        image = read_image(path)
        gray = image.astype(np.float32)
        if gray.ndim == 3:
            gray = gray @ LUMA
        gray /= np.iinfo(image.dtype).max
        mean = ndimage.gaussian_filter(gray, 2.0)
        variance = ndimage.gaussian_filter(gray * gray, 2.0) - mean * mean
        if best is None:
            best, index, composite = variance, np.zeros(gray.shape, np.uint16), image
            continue
        won = variance > best
        np.copyto(best, variance, where=won)
        index[won] = k
        composite[won] = image[won]
    return composite, index


def measure(cmd: list[str]) -> Run:
    """Run `cmd` in a fresh process; return its wall time and peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        if os.access(TIME, os.X_OK):
            full = [TIME, "-f", "%e %M", "-o", report.name, *cmd]
        else:
            full = [sys.executable, "-c", WRAPPER, report.name, *cmd]
        proc = subprocess.run(full, capture_output=True, text=True)
        lines = report.read().splitlines()
    if proc.returncode != 0:
        tail = "".join(f"\n    {line}" for line in proc.stderr.strip().splitlines()[-5:])
        print(f"  FAILED ({proc.returncode}): {' '.join(cmd[:4])} ...{tail}", flush=True)
        return Run(None, None)
    wall, kib = lines[-1].split()
    return Run(float(wall), int(kib) / 1024)


def run_commands(files: list[str], out_dir: Path, methods: list[str]) -> dict[str, list[str]]:
    """The commands to measure for one stack, by run name."""
    py, script = sys.executable, str(Path(__file__).resolve())
    commands = {
        "decode": [py, "-c", DECODE, *files],
        "reference": [py, script, "--run-reference", str(out_dir / "ref.png"), *files],
    }
    for method in methods:
        flag = [] if method == "default" else ["--method", method]
        name = "merge" if method == "default" else f"merge --method {method}"
        out = out_dir / f"merge_{method}.png"
        commands[name] = [py, "-m", "stacker", "merge", *files, "-o", str(out), "--quiet", *flag]
    return commands


def best_of(runs: list[Run]) -> Run:
    """Fastest wall time and highest peak RSS over repeats (failed if any repeat failed)."""
    if any(r.wall is None for r in runs):
        return Run(None, None)
    return Run(min(r.wall for r in runs), max(r.rss for r in runs))


def fmt_num(value: float | None, spec: str) -> str:
    """Format a number, or 'failed' for a missing one."""
    return "failed" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None if either is missing."""
    return None if a is None or b is None else a / b


def format_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """Render rows as aligned plain text or as a markdown table."""
    if markdown:
        lines = [headers, ["---"] * len(headers), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
                     for cells in lines)


def machine_info() -> dict[str, str]:
    """CPU, core count and library versions of this machine."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "nproc": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "stacker": stacker.__version__,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Time and measure peak memory of stacker merge vs decode-only and a "
        "plain reference, on synthetic stacks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stacker_bench"),
                        help="cache folder for the synthetic stacks and outputs")
    parser.add_argument("--width", type=int, default=3000, help="slice width in pixels")
    parser.add_argument("--height", type=int, default=2000, help="slice height in pixels")
    parser.add_argument("--slices", type=int, nargs="+", default=[20, 40],
                        help="stack depths to measure")
    parser.add_argument("--format", choices=["jpg", "tif"], default="jpg",
                        help="jpg: RGB 8-bit JPEG q92; tif: uncompressed 16-bit grey TIFF")
    parser.add_argument("--methods", nargs="+", default=["default"],
                        help="merge methods to run; 'default' passes no --method")
    parser.add_argument("--repeat", type=int, default=1,
                        help="repeats per run (interleaved); best wall time is kept")
    parser.add_argument("--markdown", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke configuration: 600x400 with 4 and 8 slices")
    parser.add_argument("--run-reference", nargs="+", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.height, args.slices = 600, 400, [4, 8]
    return args


def main(argv: list[str] | None = None) -> None:
    """Generate the stacks, measure every run, print (and optionally save) the tables."""
    args = parse_args(argv)
    if args.run_reference:  # internal: the reference run, inside its measured subprocess
        output, *files = args.run_reference
        write_image(output, reference_stack(files)[0])
        return

    info = machine_info()
    print(", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    label = f"{args.format} {args.width}x{args.height}"
    out_dir = args.workdir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    startup = measure([sys.executable, "-m", "stacker", "--version"])
    frame_mb = args.width * args.height * (3 if args.format == "jpg" else 2) / 2**20

    results: dict[int, dict[str, Run]] = {}
    for n in args.slices:
        start = time.perf_counter()
        folder = args.workdir / f"{args.format}_{args.width}x{args.height}_{n}"
        files = [str(p) for p in make_stack(folder, n, args.width, args.height, args.format)]
        size = sum(len(Path(f).read_bytes()) for f in files) / 2**20  # also warms cache
        print(f"{label} x{n}: {size:.1f} MB on disk, ready in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        commands = run_commands(files, out_dir, args.methods)
        runs: dict[str, list[Run]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(measure(cmd))
                print(f"  {name}: wall {fmt_num(runs[name][-1].wall, '.2f')}", flush=True)
        results[n] = {name: best_of(r) for name, r in runs.items()}

    headers = ["stack", "slices", "run", "wall s", "peak RSS MB", "x decode", "x reference",
               "RSS MB/slice", "(RSS-startup)/frame", "decode share"]
    rows = []
    for n, by_run in results.items():
        decode, ref = by_run["decode"].wall, by_run["reference"].wall
        for name, r in by_run.items():
            above = None if r.rss is None else (r.rss - startup.rss) / frame_mb
            rows.append([label, str(n), name, fmt_num(r.wall, ".2f"), fmt_num(r.rss, ".0f"),
                         fmt_num(ratio(r.wall, decode), ".2f"),
                         fmt_num(ratio(r.wall, ref), ".2f"),
                         fmt_num(None if r.rss is None else r.rss / n, ".1f"),
                         fmt_num(above, ".1f"),
                         fmt_num(ratio(decode, r.wall), ".0%")])
    lo, hi = min(results), max(results)
    growth_headers = ["run", f"RSS MB @{lo}", f"RSS MB @{hi}", "delta MB",
                      "delta MB per extra slice"]
    growth = []
    for name in results[lo]:
        a, b = results[lo][name].rss, results[hi][name].rss
        delta = None if a is None or b is None else b - a
        per = None if delta is None or hi == lo else delta / (hi - lo)
        growth.append([name, fmt_num(a, ".0f"), fmt_num(b, ".0f"), fmt_num(delta, "+.0f"),
                       fmt_num(per, "+.2f")])
    notes = [
        f"startup (python -m stacker --version): {fmt_num(startup.wall, '.2f')} s, "
        f"{fmt_num(startup.rss, '.0f')} MB peak RSS; included in every run",
        f"frame = one decoded slice, {frame_mb:.1f} MB; decode share = decode wall / run wall",
    ]

    print()
    print(format_table(headers, rows, markdown=False))
    print()
    print(format_table(growth_headers, growth, markdown=False))
    print("\n".join(notes))
    if args.markdown:
        text = [
            f"# stacker speed benchmark ({time.strftime('%Y-%m-%d %H:%M')})",
            "",
            f"Command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
            "",
            *[f"- {k}: {v}" for k, v in info.items()],
            "",
            format_table(headers, rows, markdown=True),
            "",
            format_table(growth_headers, growth, markdown=True),
            "",
            *[f"- {note}" for note in notes],
        ]
        args.markdown.write_text("\n".join(text) + "\n")
        print(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    main()
