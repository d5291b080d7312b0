"""Benchmark the speed and peak memory of ``stacker merge`` on synthetic stacks, in suites.

Each suite generates its synthetic focal stacks (cached in ``--workdir``) and measures each
run in a fresh subprocess: wall time and peak RSS (via ``/usr/bin/time`` when present). A
suite's runs happen back to back in one invocation, so their ratios are comparable on a noisy
machine. The runs:

* ``decode``: ``stacker.io.read_image`` on every slice, one thread, nothing else (the floor);
  ``decode xN`` decodes on N threads (the floor of a parallel pipeline);
* ``reference``: one thread, one slice at a time: decode, float32 grey, ``gaussian_filter``
  (sigma 2) of the image and of its square, local variance, running argmax and pick of the
  composite's pixels; the composite is written like merge's;
* ``merge``: ``python -m stacker merge FILES -o out.tif --quiet --method M --align A``
  (all cores). Every run writes its composite as TIFF.

Suites (``all``: every suite but ``huge``):

* ``jpeg``: 30 slices, 3000x2000 RGB JPEG q92: decode, reference, each method with
  alignment (similarity) and with ``--align none``. Bar: default merge <= 2x decode.
* ``tiff16``: 50 slices, 2048x2048 16-bit grey uncompressed TIFF files: the same runs.
  Bars: default merge <= reference; ``--method argmax --align none`` <= reference / 2.
* ``flat``: every method without alignment, and the default one with it, on 25, 50 and
  100 slices of one 2000x2000 JPEG stack (every 4th, every 2nd and every slice).
  Bar: peak RSS within 10%.
* ``big``: 20 slices, 4000x3000 (12 MP) RGB JPEG: each method. Bar: default < 1 GiB RSS.
* ``huge`` (opt-in: slow, ~500 MB of files): 100 slices, 6000x4000 (24 MP) RGB JPEG:
  default merge. Bar: it completes with peak RSS < 2 GiB.
* ``tiled`` (opt-in: ~1 GB of files): 10 slices, 8000x6000 16-bit grey TIFF: depthmap and
  argmax without alignment, whole frame and ``--tile 2048``, and whether the composites
  differ.
* ``stages``: the CPU time of each stage of the default merge for one slice of the ``jpeg``
  stack, in this process on one thread (OpenCV's included), and the CPU the ``jpeg`` bar
  leaves on this machine's cores: what a pipeline that kept every core busy would need.
* ``real`` (opt-in; skipped without ``../shared/stacks`` beside the project): the default
  merge of every real stack there with and without alignment, best of two.
  Bar: alignment adds at most 50%.

Usage::

    python scripts/bench_speed.py                        # all suites but huge
    python scripts/bench_speed.py --quick                # tiny sizes, all but huge, seconds
    python scripts/bench_speed.py --suite huge --markdown /tmp/huge.md
    python scripts/bench_speed.py --suite jpeg tiff16 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import tifffile
from PIL import Image
from scipy import ndimage

import stacker
from stacker.io import read_image
from stacker.outputs import write_image

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
DECODE = (
    "import sys\n"
    "from concurrent.futures import ThreadPoolExecutor\n"
    "from stacker.io import read_image\n"
    "with ThreadPoolExecutor(int(sys.argv[1])) as pool:\n"
    "    for _ in pool.map(read_image, sys.argv[2:]): pass\n"
)
# Prefix for the one-thread runs: keeps numpy's BLAS (the RGB-to-grey product) on one thread.
# `env` execs the command, so the measured process is still the Python one.
ONE_THREAD = ["env", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"]
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
METHODS = ("depthmap", "pyramid", "argmax")  # the first is the default
ALIGNS = ("similarity", "none")  # the first is the default
GIB = 1024  # MiB


@dataclass(frozen=True)
class StackSpec:
    """A synthetic stack: `slices` files of `width` x `height`, RGB JPEG or grey TIFF."""

    fmt: str  # "jpg": 8-bit RGB JPEG q92; "tif": 16-bit grey uncompressed TIFF
    width: int
    height: int
    slices: int

    @property
    def frame(self) -> str:
        """Human-readable slice size and kind."""
        kind = "RGB JPEG q92" if self.fmt == "jpg" else "16-bit grey TIFF"
        return f"{self.width}x{self.height} {kind}"

    @property
    def label(self) -> str:
        """Human-readable description of the stack."""
        return f"{self.slices} x {self.frame}"

    @property
    def frame_mb(self) -> float:
        """Size of one decoded slice in MiB."""
        return self.width * self.height * (3 if self.fmt == "jpg" else 2) / 2**20


# Stack per suite: (full size, --quick size).
SPECS = {
    "jpeg": (StackSpec("jpg", 3000, 2000, 30), StackSpec("jpg", 600, 400, 4)),
    "tiff16": (StackSpec("tif", 2048, 2048, 50), StackSpec("tif", 256, 256, 6)),
    "flat": (StackSpec("jpg", 2000, 2000, 100), StackSpec("jpg", 400, 400, 8)),
    "big": (StackSpec("jpg", 4000, 3000, 20), StackSpec("jpg", 800, 600, 3)),
    "huge": (StackSpec("jpg", 6000, 4000, 100), StackSpec("jpg", 1200, 800, 10)),
    "tiled": (StackSpec("tif", 8000, 6000, 10), StackSpec("tif", 1200, 900, 4)),
}
TILE = 2048  # --tile of the tiled suite


@dataclass
class Run:
    """One measured subprocess: wall time in s and peak RSS in MiB (None if it failed)."""

    wall: float | None
    rss: float | None


@dataclass(frozen=True)
class Job:
    """One command to measure and its labels in the tables."""

    run: str
    argv: tuple[str, ...]
    method: str = "-"
    align: str = "-"

    @property
    def name(self) -> str:
        """Label of the job in progress lines."""
        return self.run if self.method == "-" else f"{self.run} {self.method}/{self.align}"


@dataclass
class Table:
    """One suite's results: a title, a table and notes (bars included)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]


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


def make_stack(workdir: Path, spec: StackSpec) -> list[Path]:
    """Write the stack's slices, focused at different depths (reused if all already exist).

    Each slice blends the sharp texture with one blurred copy through a Gaussian ridge
    along a tilted plane, so the sharp band sweeps across the frame from slice to slice.
    """
    n, fmt = spec.slices, spec.fmt
    directory = workdir / f"{fmt}_{spec.width}x{spec.height}_{n}"
    paths = [directory / f"slice_{k:03d}.{fmt}" for k in range(n)]
    if sorted(directory.glob(f"slice_*.{fmt}")) == paths:
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("slice_*"):
        old.unlink()
    rng = np.random.default_rng(0)
    sharp = texture(spec.height, spec.width, rng)
    blurred = ndimage.gaussian_filter(sharp, sigma=(6, 6, 0))
    detail = sharp - blurred
    y, x = np.ogrid[0 : 1 : spec.height * 1j, 0 : 1 : spec.width * 1j]
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
            tifffile.imwrite(tmp, np.rint(gray * 65535).astype(np.uint16), compression=None)
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


def measure(argv: tuple[str, ...]) -> Run:
    """Run `argv` in a fresh process; return its wall time and peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        if os.access(TIME, os.X_OK):
            full = [TIME, "-f", "%e %M", "-o", report.name, *argv]
        else:
            full = [sys.executable, "-c", WRAPPER, report.name, *argv]
        proc = subprocess.run(full, capture_output=True, text=True)
        lines = report.read().splitlines()
    if proc.returncode != 0:
        tail = "".join(f"\n    {line}" for line in proc.stderr.strip().splitlines()[-5:])
        print(f"    FAILED ({proc.returncode}): {' '.join(argv[:6])} ...{tail}", flush=True)
        return Run(None, None)
    wall, kib = lines[-1].split()
    return Run(float(wall), int(kib) / 1024)


def best_of(runs: list[Run]) -> Run:
    """Fastest wall time and highest peak RSS over repeats (failed if any repeat failed)."""
    if any(r.wall is None for r in runs):
        return Run(None, None)
    return Run(min(r.wall for r in runs), max(r.rss for r in runs))


def fmt_num(value: float | None, spec: str) -> str:
    """Format a number, or '-' for a missing one."""
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None if either is missing."""
    return None if a is None or b is None else a / b


def bar(text: str, value: float | None, limit: float, spec: str) -> str:
    """One bar's verdict: `value` must be at most `limit`."""
    if value is None:
        return f"bar {text} <= {limit:{spec}}: not measured (run failed) -> MISSED"
    verdict = "met" if value <= limit else "MISSED"
    return f"bar {text} <= {limit:{spec}}: {value:{spec}} -> {verdict}"


class Bench:
    """Shared state of one invocation: where stacks live, sizes, repeats, startup cost."""

    def __init__(self, workdir: Path, quick: bool, repeat: int):
        self.workdir = workdir
        self.quick = quick
        self.repeat = repeat
        self.out_dir = workdir / "out"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.startup = measure((sys.executable, "-m", "stacker", "--version"))

    def stack(self, suite: str) -> tuple[StackSpec, list[str]]:
        """The suite's stack spec and files, generated if needed and read once (warm cache)."""
        spec = SPECS[suite][1 if self.quick else 0]
        start = time.perf_counter()
        files = [str(p) for p in make_stack(self.workdir, spec)]
        size = sum(len(Path(f).read_bytes()) for f in files) / 2**20
        print(
            f"{suite}: {spec.label}, {size:.0f} MiB on disk, ready in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        return spec, files

    def decode(self, files: list[str], threads: int = 1) -> Job:
        """Decode-only job on `threads` threads."""
        run = "decode" if threads == 1 else f"decode x{threads}"
        prefix = ONE_THREAD if threads == 1 else []
        return Job(run, (*prefix, sys.executable, "-c", DECODE, str(threads), *files))

    def reference(self, suite: str, files: list[str]) -> Job:
        """The plain single-threaded reference job."""
        out = str(self.out_dir / f"{suite}_reference.tif")
        script = str(Path(__file__).resolve())
        return Job(
            "reference", (*ONE_THREAD, sys.executable, script, "--run-reference", out, *files)
        )

    def merge(
        self, suite: str, files: list[str], method: str, align: str, extra: tuple[str, ...] = ()
    ) -> Job:
        """A ``python -m stacker merge`` job, with `extra` options."""
        out = str(self.out_dir / f"{suite}_{method}_{align}{'_'.join(('', *extra))}.tif")
        options = ("--quiet", "--method", method, "--align", align, *extra)
        argv = (sys.executable, "-m", "stacker", "merge", *files, "-o", out, *options)
        return Job(" ".join(("merge", *extra)), argv, method, align)

    def run(self, suite: str, jobs: list[Job]) -> list[Run]:
        """Measure every job `repeat` times, interleaved; return the best of each."""
        runs: list[list[Run]] = [[] for _ in jobs]
        for _ in range(self.repeat):
            for job, done in zip(jobs, runs, strict=True):
                done.append(measure(job.argv))
                print(
                    f"  {suite}: {job.name}: {fmt_num(done[-1].wall, '.2f')} s, "
                    f"{fmt_num(done[-1].rss, '.0f')} MiB",
                    flush=True,
                )
        return [best_of(r) for r in runs]

    def runs_table(self, title: str, spec: StackSpec, jobs: list[Job], results: list[Run]) -> Table:
        """Standard table: one row per job, with ratios to the decode and reference runs."""
        by_run = {job.run: r for job, r in zip(jobs, results, strict=True)}
        baselines = [name for name in ("decode", "reference") if name in by_run]
        headers = [
            "run",
            "method",
            "align",
            "wall s",
            "peak RSS MiB",
            *[f"x {name}" for name in baselines],
            "frames above startup",
        ]
        rows = []
        for job, r in zip(jobs, results, strict=True):
            above = None if r.rss is None else (r.rss - self.startup.rss) / spec.frame_mb
            rows.append(
                [
                    job.run,
                    job.method,
                    job.align,
                    fmt_num(r.wall, ".2f"),
                    fmt_num(r.rss, ".0f"),
                    *[fmt_num(ratio(r.wall, by_run[name].wall), ".2f") for name in baselines],
                    fmt_num(above, ".1f"),
                ]
            )
        notes = [f"frame = one decoded slice, {spec.frame_mb:.1f} MiB"]
        return Table(f"{title}: {spec.label}", headers, rows, notes)


def find(jobs: list[Job], results: list[Run], method: str, align: str) -> Run:
    """The result of the merge job with this method and alignment."""
    for job, r in zip(jobs, results, strict=True):
        if job.run == "merge" and (job.method, job.align) == (method, align):
            return r
    raise KeyError((method, align))


def all_merges(bench: Bench, suite: str, files: list[str]) -> list[Job]:
    """One merge job per method and alignment (default first)."""
    return [bench.merge(suite, files, m, a) for a in ALIGNS for m in METHODS]


def suite_jpeg(bench: Bench) -> Table:
    """Time of every method, aligned or not, against decoding and the reference."""
    spec, files = bench.stack("jpeg")
    threads = len(os.sched_getaffinity(0))
    jobs = [
        bench.decode(files),
        bench.decode(files, threads),
        bench.reference("jpeg", files),
        *all_merges(bench, "jpeg", files),
    ]
    results = bench.run("jpeg", jobs)
    table = bench.runs_table("jpeg", spec, jobs, results)
    default = find(jobs, results, METHODS[0], ALIGNS[0])
    table.notes.append(
        bar("default merge / decode", ratio(default.wall, results[0].wall), 2.0, ".2f")
    )
    return table


def suite_tiff16(bench: Bench) -> Table:
    """Time of every method, aligned or not, against the plain reference on 16-bit TIFF."""
    spec, files = bench.stack("tiff16")
    jobs = [
        bench.decode(files),
        bench.reference("tiff16", files),
        *all_merges(bench, "tiff16", files),
    ]
    results = bench.run("tiff16", jobs)
    table = bench.runs_table("tiff16", spec, jobs, results)
    ref = results[1].wall
    default = find(jobs, results, METHODS[0], ALIGNS[0])
    fastest = find(jobs, results, "argmax", "none")
    table.notes += [
        bar("default merge / reference", ratio(default.wall, ref), 1.0, ".2f"),
        bar("argmax/none merge / reference", ratio(fastest.wall, ref), 0.5, ".2f"),
    ]
    return table


def suite_flat(bench: Bench) -> Table:
    """Peak RSS of every method on 1/4, 1/2 and all of one stack's slices."""
    spec, files = bench.stack("flat")
    subsets = [files[::4], files[::2], files]
    counts = [len(s) for s in subsets]
    cases = [(method, "none") for method in METHODS] + [(METHODS[0], "similarity")]
    jobs = [bench.merge(f"flat{len(s)}", s, m, align) for m, align in cases for s in subsets]
    results = bench.run("flat", jobs)
    headers = [
        "method",
        "align",
        *[f"RSS MiB @{n}" for n in counts],
        "spread",
        *[f"wall s @{n}" for n in counts],
    ]
    rows, notes = [], []
    for i, (method, align) in enumerate(cases):
        runs = results[i * len(subsets) : (i + 1) * len(subsets)]
        rss = [r.rss for r in runs]
        spread = None if None in rss else max(rss) / min(rss) - 1
        rows.append(
            [
                method,
                align,
                *[fmt_num(v, ".0f") for v in rss],
                fmt_num(spread, ".1%"),
                *[fmt_num(r.wall, ".2f") for r in runs],
            ]
        )
        notes.append(bar(f"RSS spread (max/min - 1), {method}, align {align}", spread, 0.10, ".1%"))
    return Table(f"flat: {'/'.join(map(str, counts))} x {spec.frame}", headers, rows, notes)


def suite_big(bench: Bench) -> Table:
    """Peak RSS of every method on a 12 MP stack."""
    spec, files = bench.stack("big")
    jobs = [bench.decode(files), *[bench.merge("big", files, m, ALIGNS[0]) for m in METHODS]]
    results = bench.run("big", jobs)
    table = bench.runs_table("big", spec, jobs, results)
    default = find(jobs, results, METHODS[0], ALIGNS[0])
    table.notes.append(bar("default merge peak RSS MiB", default.rss, GIB, ".0f"))
    return table


def suite_huge(bench: Bench) -> Table:
    """Time and peak RSS of the default merge on a 100-slice 24 MP stack."""
    spec, files = bench.stack("huge")
    jobs = [bench.decode(files), bench.merge("huge", files, METHODS[0], ALIGNS[0])]
    results = bench.run("huge", jobs)
    table = bench.runs_table("huge", spec, jobs, results)
    table.notes.append(bar("default merge peak RSS MiB", results[1].rss, 2 * GIB, ".0f"))
    return table


def suite_tiled(bench: Bench) -> Table:
    """Whole-frame against tiled stacking of a 48 MP uncompressed stack, and their difference."""
    spec, files = bench.stack("tiled")
    tile = ("--tile", str(TILE if not bench.quick else 256))
    jobs = [bench.decode(files)]
    for method in ("depthmap", "argmax"):
        jobs += [bench.merge("tiled", files, method, "none", extra) for extra in ((), tile)]
    results = bench.run("tiled", jobs)
    table = bench.runs_table("tiled", spec, jobs, results)
    for whole, tiled in zip(jobs[1::2], jobs[2::2], strict=True):
        a, b = (tifffile.imread(job.argv[job.argv.index("-o") + 1]) for job in (whole, tiled))
        differ = float(np.mean(a != b))
        table.notes.append(f"{whole.method}: tiled composite differs from whole in {differ:.2%}")
    return table


REAL_STACKS = Path(__file__).resolve().parents[1].parent / "shared" / "stacks"
OVERHEAD_BAR = 0.5


def cpu_seconds(func: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Least CPU time of `repeat` calls of `func`, and its last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.process_time()
        result = func()
        best = min(best, time.process_time() - start)
    return best, result


def suite_stages(bench: Bench) -> Table:
    """CPU per stage of the default merge on one thread, against the jpeg bar's budget."""
    import cv2

    from stacker.align import estimate_stack_transforms
    from stacker.composite import DepthBlend
    from stacker.focus import focus_measure, to_gray
    from stacker.io import open_stack
    from stacker.methods import STATES
    from stacker.resolve import resolve_depth

    spec, files = bench.stack("jpeg")
    stack = open_stack(files)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        decode, image = cpu_seconds(lambda: stack[0])
        luma, grey = cpu_seconds(lambda: stack.grey(0))
        other = stack.grey(1)
        pair, _ = cpu_seconds(lambda: estimate_stack_transforms([grey, other], reference=0))
        gray_s, gray = cpu_seconds(lambda: to_gray(image))
        focus_s, _ = cpu_seconds(lambda: focus_measure(gray, measure="mean-std"))
        # The running state's cost depends on what it holds: fold in three different
        # slices and time the later two.
        state = STATES[METHODS[0]](image.shape, image.dtype)
        spent = []
        for k in range(min(3, len(stack))):
            later = stack[k]
            measured = focus_measure(to_gray(later), measure="mean-std")
            start = time.process_time()
            state.update(state.prepare(later, measured))
            spent.append(time.process_time() - start)
        update = min(spent[1:] or spent)
        result_s, r = cpu_seconds(lambda: state.result(0.0, None), 1)
        finish, (depth, _) = cpu_seconds(
            lambda: resolve_depth(
                r.depth,
                r.coarse,
                r.confidence,
                fine_peak=r.sharpness,
                coarse_peak=r.strength,
            ),
            1,
        )
        blend = DepthBlend(depth, image.shape, len(stack))
        blend_s, _ = cpu_seconds(lambda: blend.add(0, image))
    finally:
        cv2.setNumThreads(threads)
    finish += result_s
    stages = [
        ("decode the slice (RGB)", decode, 1),
        ("decode its luma again (registration pass)", luma, 1),
        ("register a pair (downscale both, match), at most", pair, 1),
        ("grey of the slice", gray_s, 1),
        ("focus measure (mean-std)", focus_s, 1),
        ("running state: prepare and update", update, 1),
        ("result and depth resolution, once per stack", finish, 0),
        ("second pass: decode the slice again", decode, 1),
        ("second pass: blend the slice in", blend_s, 1),
    ]
    n, cores = spec.slices, len(os.sched_getaffinity(0))
    need = sum(cpu * n if per_slice else cpu for _, cpu, per_slice in stages)
    # The bar's wall time, less the start-up every merge pays, on every core.
    decode_run = bench.run("stages", [bench.decode(files)])[0]
    budget = (2.0 * decode_run.wall - bench.startup.wall) * cores
    rows = [
        [name, f"{cpu * 1e3:.0f}", f"{cpu * n if per_slice else cpu:.2f}"]
        for name, cpu, per_slice in stages
    ]
    rows.append(["total", "", f"{need:.2f}"])
    notes = [
        "one slice, least CPU time of three runs (the running state: of the second and third "
        "slices folded in; the finishing steps: one run); no warp (the synthetic stack does "
        "not move)",
        f"CPU the jpeg bar allows: 2 x the decode run ({decode_run.wall:.2f} s) less start-up "
        f"({bench.startup.wall:.2f} s), on {cores} cores = {budget:.2f} s; these stages alone "
        f"need {need:.2f} s ({need / budget:.1f}x), without gain and noise estimates, writing "
        "or any idle core",
    ]
    return Table(
        f"stages: CPU of the default merge, {spec.label}",
        ["stage", "ms per slice", f"s for {n} slices"],
        rows,
        notes,
    )


def real_stacks() -> list[tuple[str, list[str]]]:
    """Name and inputs of each real stack: its images (not ground truth), or its first sub-stack."""
    stacks = []
    for folder in sorted(p for p in REAL_STACKS.glob("*") if p.is_dir() and p.name != "LICENSES"):
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
        for source in (folder, *subfolders[:1]):
            images = sorted(
                str(p)
                for p in source.iterdir()
                if p.suffix.lower() in (".png", ".jpg", ".tif") and not p.name.startswith("gt_")
            )
            if images:
                stacks.append((str(source.relative_to(REAL_STACKS)), images))
                break
    return stacks


def suite_real(bench: Bench) -> Table:
    """Alignment overhead of the default merge on the real stacks, best of two runs each."""
    headers = ["stack", "none s", "aligned s", "overhead", "aligned RSS MiB"]
    rows, notes = [], []
    if not REAL_STACKS.is_dir():
        return Table("real: skipped", headers, rows, [f"{REAL_STACKS} not found"])
    for name, files in real_stacks():
        jobs = [bench.merge("real", files, METHODS[0], a) for a in ("none", ALIGNS[0])]
        runs: list[list[Run]] = [[], []]
        for _ in range(max(2, bench.repeat)):
            for job, done in zip(jobs, runs, strict=True):
                done.append(measure(job.argv))
        plain, aligned = (best_of(r) for r in runs)
        overhead = ratio(aligned.wall, plain.wall)
        overhead = None if overhead is None else overhead - 1
        print(f"  real: {name}: {fmt_num(plain.wall, '.2f')} / {fmt_num(aligned.wall, '.2f')} s")
        rows.append(
            [
                name,
                fmt_num(plain.wall, ".2f"),
                fmt_num(aligned.wall, ".2f"),
                fmt_num(overhead, "+.0%"),
                fmt_num(aligned.rss, ".0f"),
            ]
        )
        notes.append(bar(f"{name}: alignment overhead", overhead, OVERHEAD_BAR, "+.0%"))
    return Table("real: the stacks in ../shared/stacks", headers, rows, notes)


SUITES: dict[str, Callable[[Bench], Table]] = {
    "jpeg": suite_jpeg,
    "tiff16": suite_tiff16,
    "flat": suite_flat,
    "big": suite_big,
    "huge": suite_huge,
    "tiled": suite_tiled,
    "real": suite_real,
    "stages": suite_stages,
}
OPT_IN = {"huge", "tiled", "real"}


def format_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """Render rows as aligned plain text or as a markdown table."""
    if markdown:
        lines = [headers, ["---"] * len(headers), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines
    )


def stacker_revision() -> str:
    """Git commit of the stacker package, with '+dirty' if stacker/ has uncommitted changes."""
    git = ["git", "-C", str(Path(stacker.__file__).resolve().parent)]
    try:
        rev = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def machine_info() -> dict[str, str]:
    """CPU, core count, load, library versions and the stacker commit measured."""
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
        "load 1 min": f"{os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "stacker": f"{stacker.__version__} ({stacker_revision()})",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Time and measure peak memory of stacker merge against decoding and a "
        "plain reference, on synthetic stacks, in suites (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--suite",
        nargs="+",
        choices=[*SUITES, "all"],
        default=["all"],
        help="suites to run; 'all' is every suite but the opt-in 'huge'",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/stacker_bench"),
        help="cache folder for the synthetic stacks and outputs",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="repeats per run (interleaved); best wall time is kept",
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument(
        "--quick", action="store_true", help="tiny stacks: a smoke run of the same suites"
    )
    parser.add_argument("--run-reference", nargs="+", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if "all" in args.suite:
        args.suite = [s for s in SUITES if s not in OPT_IN or s in args.suite]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the chosen suites, print (and optionally save) one table per suite."""
    args = parse_args(argv)
    if args.run_reference:  # internal: the reference run, inside its measured subprocess
        output, *files = args.run_reference
        write_image(output, reference_stack(files)[0])
        return

    info = machine_info()
    machine = ", ".join(f"{k} {v}" for k, v in info.items())
    print(machine, flush=True)
    bench = Bench(args.workdir, args.quick, args.repeat)
    tables = [SUITES[name](bench) for name in args.suite]
    common = [
        f"startup (python -m stacker --version): {fmt_num(bench.startup.wall, '.2f')} s, "
        f"{fmt_num(bench.startup.rss, '.0f')} MiB peak RSS; included in every run",
        "frames above startup = (peak RSS - startup RSS) / frame; x decode, x reference = "
        "wall time ratios; decode and reference run on one thread, merge on all cores",
    ]
    if args.quick:
        common.append("--quick: tiny stacks, the bars are not meaningful")
    revision = stacker_revision()
    if revision not in info["stacker"]:
        common.append(f"WARNING: stacker changed during the run (now {revision})")

    print()
    for table in tables:
        print(f"## {table.title}\n")
        print(format_table(table.headers, table.rows, markdown=False))
        print("\n".join(table.notes) + "\n")
    print("\n".join([machine, *common]))
    if args.markdown:
        text = [
            f"# stacker speed benchmark ({time.strftime('%Y-%m-%d %H:%M')})",
            "",
            f"Command: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`",
            "",
            f"Machine: {machine}",
            "",
        ]
        for table in tables:
            text += [
                f"## {table.title}",
                "",
                format_table(table.headers, table.rows, True),
                "",
                *[f"- {note}" for note in table.notes],
                "",
            ]
        text += [f"- {note}" for note in common]
        args.markdown.write_text("\n".join(text) + "\n")
        print(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    main()
