"""Ground-truth quality benchmark: every merge method on synthetic stacks with known answers.

Each scene is rendered deterministically with :mod:`stacker.synthetic` (a sharp texture over a
known height field, defocus blur, occlusion and sensor noise), merged with every method in
``stacker.pipeline.METHODS``, and scored against the truth: composite PSNR and SSIM against the
sharp image, PSNR in a band around depth discontinuities (halos), and depth error on textured
pixels. Two references are added as rows: ``oracle`` (each pixel from the slice nearest its
true height, the best a hard pick can do), ``enfuse`` (when the binary is installed) and
``openfocus`` (a neural stacker, when ``$OPENFOCUS`` names its executable or it is on the PATH).

A second table scores alignment: the slices of a few scenes are moved by a KNOWN similarity
(focus breathing, drift, rotation) and given exposure flicker, and ``stacker.merge`` must
recover the transforms and gains and come within ``GAP_BAR`` dB of the PSNR it reaches on the
same stack rendered without motion, with alignment adding at most ``OVERHEAD_BAR`` to the
merge time.

The markdown result (captions, tables, per-method summary, alignment bars) goes to stdout;
progress to stderr.

Usage::

    python scripts/bench_quality.py                      # full run, about two minutes on 2 cores
    python scripts/bench_quality.py --markdown quality.md --save-dir /tmp/quality
    python scripts/bench_quality.py --scenes terraces object   # filters both tables
    python scripts/bench_quality.py --alignment-only     # just the alignment table
    python scripts/bench_quality.py --no-alignment       # just the methods table
    python scripts/bench_quality.py --quick              # tiny smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import photo_scenes
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

import stacker
from stacker import synthetic
from stacker._dtype import convert_dtype
from stacker.depth import depth_preview
from stacker.io import read_image
from stacker.outputs import write_image
from stacker.pipeline import METHODS

LUMA = np.array([0.299, 0.587, 0.114])
BORDER = 8  # px excluded from every metric
TEXTURE_SIGMA, TEXTURE_STD = 2.0, 0.02  # textured: local luma std above this
EDGE_JUMP, HALO_RADIUS = 0.5, 6  # depth edge: true height jump between 4-neighbours (slices)
# Heights span MARGIN .. n - 1 - MARGIN slices: the whole focal range, and flat areas at the
# extremes are not exactly half-way between two slices (where either would be right).
MARGIN = 0.3
CROP = 128  # side of the saved crops, px
QUICK_SHAPE = (96, 96)
# Alignment table.
ALIGN_BORDER = 24  # px excluded from the alignment PSNRs
FLICKER = 0.1  # per-slice exposure gains drawn in [1 - FLICKER, 1 + FLICKER]
GRID = 17  # transform error: RMS over a GRID x GRID lattice spanning the whole frame
GAP_BAR = 0.5  # dB: aligned composite at most this far below the one from the still stack
OVERHEAD_BAR = 0.5  # alignment adds at most this share to the merge time (still stack)
SUPERSAMPLE = 2  # moved scenes are rendered this many times finer, then binned to pixels
FINE_LAYERS = 2  # depth layers per slice of the fine render (4 would double its time)


@dataclass(frozen=True)
class Scene:
    """One synthetic stack: height kind, size, format and rendering settings."""

    name: str
    kind: str
    shape: tuple[int, int]
    n_slices: int
    channels: int | None
    dtype: type
    blur: float
    noise: float = 0.01
    edges: bool = False  # has depth discontinuities (halo band reported)
    seed: int = 0
    photo: str | None = None  # a photograph (photo_scenes.PHOTOS) instead of the texture
    front: str | None = None  # another photograph on the 'object' height field's object
    highlights: int = 0  # saturated specular glints added to the sharp image
    jpeg: int | None = None  # every slice through a JPEG of this quality (8-bit only)
    half: str = "tune"  # "tune": may be tuned on; "held-out": never tuned on


SCENES = (
    Scene("plane", "plane", (384, 384), 12, None, np.uint8, blur=1.5, seed=3),
    Scene("dome", "dome", (384, 384), 16, 3, np.uint8, blur=1.2, seed=2),
    # Seed 1 gives 4 terraces: none at height 4.5, where slices 4 and 5 would tie.
    Scene("terraces", "terraces", (384, 384), 10, None, np.uint16, blur=2.0, edges=True, seed=1),
    Scene("object", "object", (384, 384), 8, 3, np.uint8, blur=1.8, edges=True, seed=4),
    Scene("smooth", "smooth", (256, 256), 40, 3, np.uint8, blur=1.0, seed=5),
    Scene("smooth-noisy", "smooth", (256, 256), 20, 3, np.uint8, blur=1.5, noise=0.03, seed=6),
    # Photographs: large smooth areas beside strong edges, glints, objects over a background.
    Scene(
        "chelsea-plane", "plane", (288, 384), 12, 3, np.uint8, blur=1.5, seed=11, photo="chelsea"
    ),
    Scene(
        "coins-terraces",
        "terraces",
        (288, 384),
        10,
        None,
        np.uint16,
        blur=2.0,
        edges=True,
        seed=12,
        photo="coins",
        highlights=12,
    ),
    Scene(
        "coffee-object",
        "object",
        (320, 384),
        16,
        3,
        np.uint8,
        blur=1.8,
        edges=True,
        seed=13,
        photo="coffee",
        front="chelsea",
        highlights=8,
        jpeg=90,
    ),
    Scene("camera-dome", "dome", (320, 320), 20, None, np.uint8, blur=1.2, seed=14, photo="camera"),
    Scene(
        "hubble-smooth",
        "smooth",
        (288, 288),
        30,
        3,
        np.uint16,
        blur=1.0,
        seed=15,
        photo="hubble_deep_field",
    ),
    Scene(
        "text-terraces",
        "terraces",
        (160, 384),
        12,
        None,
        np.uint8,
        blur=2.0,
        edges=True,
        seed=16,
        photo="text",
        jpeg=92,
    ),
    # A foreground coming into focus over a large flat page: its shrinking blur
    # looked like a zoom to the registration (false motion on a still stack).
    Scene(
        "page-chelsea",
        "object",
        (320, 448),
        30,
        3,
        np.uint8,
        blur=1.5,
        edges=True,
        seed=32,
        photo="page",
        front="chelsea",
        jpeg=90,
    ),
    Scene(
        "astronaut-plane",
        "plane",
        (320, 320),
        15,
        3,
        np.uint8,
        blur=1.5,
        seed=21,
        photo="astronaut",
        jpeg=85,
        half="held-out",
    ),
    Scene(
        "page-object",
        "object",
        (176, 384),
        10,
        None,
        np.uint16,
        blur=2.0,
        edges=True,
        seed=22,
        photo="page",
        front="coins",
        half="held-out",
    ),
    Scene(
        "ihc-dome",
        "dome",
        (320, 320),
        24,
        3,
        np.uint16,
        blur=1.2,
        seed=23,
        photo="immunohistochemistry",
        half="held-out",
    ),
    Scene(
        "moon-smooth",
        "smooth",
        (288, 288),
        40,
        None,
        np.uint16,
        blur=1.0,
        seed=24,
        photo="moon",
        half="held-out",
    ),
    Scene(
        "clock-terraces",
        "terraces",
        (288, 384),
        10,
        None,
        np.uint8,
        blur=2.0,
        edges=True,
        seed=25,
        photo="clock",
        highlights=10,
        half="held-out",
    ),
    Scene(
        "coffee-smooth",
        "smooth",
        (288, 384),
        24,
        3,
        np.uint8,
        blur=1.2,
        seed=27,
        photo="coffee",
        jpeg=88,
        half="held-out",
    ),
    Scene(
        "rocket-object",
        "object",
        (320, 448),
        20,
        3,
        np.uint8,
        blur=1.5,
        edges=True,
        seed=26,
        photo="rocket",
        front="astronaut",
        highlights=6,
        jpeg=90,
        half="held-out",
    ),
)
HALVES = ("tune", "held-out")


@dataclass(frozen=True)
class Motion:
    """Known camera motion over a stack: a similarity about the frame centre per slice.

    For slice k of n, reference r = n // 2 and t = (k - r) / max(r, n - 1 - r) in [-1, 1]:
    scale ``1 + scale * (k - r) / (n - 1)`` (so ``scale`` is the total change over the stack),
    a turn of ``rotation * t`` degrees, and a drift of ``shift[0] * t`` rows and
    ``shift[1] * t * (1 + t**2) / 2`` columns (both reach +-shift at the far end).
    """

    scale: float
    shift: tuple[float, float]  # px at the far end
    rotation: float  # degrees at the far end


# Each scene moved by a known motion, with exposure flicker; 0-4 % focus breathing.
ALIGN_SCENES = (
    (
        Scene("dome", "dome", (384, 384), 12, 3, np.uint8, blur=1.2, seed=2),
        Motion(0.04, (20.0, -14.0), 1.0),
    ),
    (
        Scene("smooth", "smooth", (256, 256), 40, 3, np.uint8, blur=1.0, seed=5),
        Motion(0.02, (-12.0, 20.0), -0.6),
    ),
    (
        Scene(
            "terraces", "terraces", (384, 384), 10, None, np.uint16, blur=2.0, edges=True, seed=1
        ),
        Motion(0.01, (16.0, 16.0), 0.4),
    ),
    (
        Scene("plane", "plane", (384, 384), 8, None, np.uint8, blur=1.5, seed=3),
        Motion(0.0, (-20.0, 10.0), -1.0),
    ),
)


@dataclass
class Truth:
    """A rendered scene: the stack and what it should give."""

    stack: np.ndarray  # (Z, M, N[, 3]) in the scene's dtype
    sharp: np.ndarray  # (M, N[, 3]) float in [0, 1]
    height: np.ndarray  # (M, N) slice units
    interior: np.ndarray  # (M, N) bool, border excluded
    textured: np.ndarray  # (M, N) bool, interior and textured
    halo: np.ndarray | None  # (M, N) bool band around depth edges, None without edges


@dataclass
class Row:
    """One method's scores on one scene; None where a metric does not apply."""

    scene: str
    method: str
    psnr: float
    ssim: float
    halo_psnr: float | None
    depth_rmse: float | None
    within_one: float | None
    seconds: float | None


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of a float grey or RGB image, as float64."""
    image = np.asarray(image, dtype=np.float64)
    return image @ LUMA if image.ndim == 3 else image


def as_float(image: np.ndarray) -> np.ndarray:
    """Pixels as float in [0, 1] (integers scaled by their full range)."""
    return convert_dtype(image, np.float32).astype(np.float64)


def depth_edges(height: np.ndarray) -> np.ndarray:
    """Pixels on either side of a true height jump of more than EDGE_JUMP slices."""
    edges = np.zeros(height.shape, bool)
    for axis in (0, 1):
        jump = np.abs(np.diff(height, axis=axis)) > EDGE_JUMP
        side = [slice(None)] * 2
        side[axis] = slice(None, -1)
        edges[tuple(side)] |= jump
        side[axis] = slice(1, None)
        edges[tuple(side)] |= jump
    return edges


def render(scene: Scene, shape: tuple[int, int]) -> Truth:
    """Render a scene's stack and derive the masks the metrics use."""
    field = synthetic.height_field(scene.kind, shape, seed=scene.seed)
    sharp = photo_scenes.sharp_image(scene, shape, field)
    height = MARGIN + field.astype(np.float64) * (scene.n_slices - 1 - 2 * MARGIN)
    stack = synthetic.render_stack(
        sharp,
        height,
        scene.n_slices,
        blur_per_slice=scene.blur,
        noise=scene.noise,
        seed=scene.seed,
        dtype=scene.dtype,
    )
    if scene.jpeg is not None:
        stack = photo_scenes.jpeg_roundtrip(stack, scene.jpeg)
    interior = np.zeros(shape, bool)
    interior[BORDER:-BORDER, BORDER:-BORDER] = True
    y = luma(sharp)
    mean = ndi.gaussian_filter(y, TEXTURE_SIGMA)
    std = np.sqrt(np.maximum(ndi.gaussian_filter(y * y, TEXTURE_SIGMA) - mean**2, 0))
    halo = None
    if scene.edges:
        halo = interior & (ndi.distance_transform_edt(~depth_edges(height)) <= HALO_RADIUS)
    return Truth(
        stack, sharp.astype(np.float64), height, interior, interior & (std > TEXTURE_STD), halo
    )


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of two [0, 1] images over the masked pixels (all channels)."""
    mse = np.mean((a[mask] - b[mask]) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of the lumas over the mask (Wang et al. 2004).

    Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1.
    """
    x, y = luma(a), luma(b)

    def blur(v):
        return ndi.gaussian_filter(v, 1.5, truncate=3.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[mask].mean())


def score(
    scene: Scene,
    truth: Truth,
    method: str,
    composite: np.ndarray,
    depth: np.ndarray | None,
    seconds: float | None,
) -> Row:
    """Compare one composite (and depth map, if any) with the truth."""
    image = as_float(composite)
    halo = None if truth.halo is None else psnr(image, truth.sharp, truth.halo)
    rmse = within = None
    if depth is not None:
        err = depth[truth.textured] - truth.height[truth.textured]
        rmse = float(np.sqrt(np.mean(err**2)))
        within = float(100 * np.mean(np.abs(err) <= 1))
    return Row(
        scene.name,
        method,
        psnr(image, truth.sharp, truth.interior),
        ssim(image, truth.sharp, truth.interior),
        halo,
        rmse,
        within,
        seconds,
    )


def enfuse_merge(stack: np.ndarray) -> tuple[np.ndarray, float]:
    """Fuse the slices with enfuse's hard-mask contrast weighting; return it and its time.

    Slices go through TIFF in their own bit depth; the time covers the enfuse process only.
    """
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        paths = [str(Path(tmp) / f"slice_{k:03d}.tif") for k in range(len(stack))]
        for path, image in zip(paths, stack, strict=True):
            write_image(path, image)
        out = str(Path(tmp) / "out.tif")
        cmd = [
            "enfuse",
            "--exposure-weight=0",
            "--saturation-weight=0",
            "--contrast-weight=1",
            "--hard-mask",
            "-o",
            out,
            *paths,
        ]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        fused = tifffile.imread(out)
    # enfuse adds an alpha channel: grey comes back (M, N, 2), RGB (M, N, 4).
    return (fused[..., 0] if stack.ndim == 3 else fused[..., :3]), seconds


def openfocus_command() -> str | None:
    """The openfocus executable: $OPENFOCUS, else ``openfocus`` on the PATH, else None.

    openfocus (PyPI) needs torch; keep it in a virtual environment of its own and
    point $OPENFOCUS at its ``bin/openfocus``.
    """
    return os.environ.get("OPENFOCUS") or shutil.which("openfocus")


def openfocus_merge(command: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Fuse with openfocus's default model (StackMFF-v3); return composite, depth and time.

    Slices go through PNG in their own bit depth, exposure matching off. Its grey
    depth map holds ``floor(255 * k / (n - 1))`` for the (probability-weighted)
    slice k, the first file being slice 0: read back, depth is quantised to
    (n - 1) / 255 slices. The time covers the openfocus process, torch start-up included.
    """
    n = len(stack)
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        folder = Path(tmp) / "slices"
        folder.mkdir()
        for k, image in enumerate(stack):
            write_image(str(folder / f"slice_{k:03d}.png"), image)
        out, depth = Path(tmp) / "fused.png", Path(tmp) / "depth.png"
        cmd = [
            command,
            "-i",
            str(folder),
            "-o",
            str(out),
            "-D",
            str(depth),
            "--depth-colormap",
            "gray",
            "--cpu",
            "--no-exposure-match",
        ]
        env = {**os.environ, "OPENFOCUS_LOG_DIR": tmp}
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        seconds = time.perf_counter() - start
        fused = read_image(out)  # Pillow would cut 16-bit RGB PNG to 8 bits
        index = read_image(depth)[..., 0].astype(np.float32) * np.float32((n - 1) / 255)
    # Grey slices come back as RGB with three equal channels.
    return (fused[..., 0] if stack.ndim == 3 else fused), index, seconds


def run_scene(scene: Scene, shape: tuple[int, int], save_dir: Path | None) -> list[Row]:
    """Render one scene, run every method and reference, score and optionally save them."""
    start = time.perf_counter()
    truth = render(scene, shape)
    log(
        f"{scene.name}: rendered {truth.stack.shape} {truth.stack.dtype} in "
        f"{time.perf_counter() - start:.1f} s; "
        f"{100 * truth.textured.sum() / truth.interior.sum():.0f}% of the interior textured"
    )
    rows, outputs = [], {}
    for method in METHODS:
        start = time.perf_counter()
        result = stacker.merge(truth.stack, method=method)
        seconds = time.perf_counter() - start
        rows.append(score(scene, truth, method, result.composite, result.depth, seconds))
        outputs[method] = (result.composite, result.depth)
    index = np.clip(np.rint(truth.height), 0, scene.n_slices - 1).astype(np.intp)
    oracle = stacker.composite_from_index(truth.stack, index)
    rows.append(score(scene, truth, "oracle", oracle, index.astype(np.float32), None))
    outputs["oracle"] = (oracle, None)
    if shutil.which("enfuse"):
        fused, seconds = enfuse_merge(truth.stack)
        rows.append(score(scene, truth, "enfuse", fused, None, seconds))
        outputs["enfuse"] = (fused, None)
    command = openfocus_command()
    if command:
        fused, depth, seconds = openfocus_merge(command, truth.stack)
        rows.append(score(scene, truth, "openfocus", fused, depth, seconds))
        outputs["openfocus"] = (fused, depth)
    for row in rows:
        log(f"  {row.method}: {fmt(row.psnr, '.2f')} dB, {fmt(row.seconds, '.2f')} s")
    if save_dir is not None:
        save_outputs(save_dir, scene, truth, outputs)
    return rows


def crop_window(truth: Truth) -> tuple[slice, slice]:
    """A CROP x CROP window centred on the depth edge nearest the image centre (or the centre)."""
    rows, cols = truth.height.shape
    cy, cx = rows // 2, cols // 2
    if truth.halo is not None:
        ys, xs = np.nonzero(depth_edges(truth.height) & truth.interior)
        if ys.size:
            nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
            cy, cx = ys[nearest], xs[nearest]
    top = int(np.clip(cy - CROP // 2, 0, max(rows - CROP, 0)))
    left = int(np.clip(cx - CROP // 2, 0, max(cols - CROP, 0)))
    return slice(top, top + CROP), slice(left, left + CROP)


def crop_strip(panels: dict[str, np.ndarray]) -> np.ndarray:
    """Labelled crops side by side, each enlarged 2x (nearest neighbour), as RGB uint8."""
    label_h, gap = 14, 4
    tiles = []
    for name, image in panels.items():
        rgb = convert_dtype(image, np.uint8)
        rgb = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        tile = Image.new("RGB", (rgb.shape[1] + gap, rgb.shape[0] + label_h), "white")
        tile.paste(Image.fromarray(rgb), (0, label_h))
        ImageDraw.Draw(tile).text((2, 1), name, fill="black")
        tiles.append(np.asarray(tile))
    return np.concatenate(tiles, axis=1)


def save_outputs(
    save_dir: Path,
    scene: Scene,
    truth: Truth,
    outputs: dict[str, tuple[np.ndarray, np.ndarray | None]],
) -> None:
    """Write truth, composites, depth previews and a strip of crops as PNG."""
    save_dir.mkdir(parents=True, exist_ok=True)
    prefix = save_dir / scene.name
    sharp = convert_dtype(truth.sharp.astype(np.float32), scene.dtype)
    write_image(f"{prefix}_truth.png", sharp)
    write_image(f"{prefix}_truth_depth.png", depth_preview(truth.height, scene.n_slices))
    window = crop_window(truth)
    panels = {"truth": sharp[window]}
    for name, (composite, depth) in outputs.items():
        write_image(f"{prefix}_{name}.png", composite)
        if depth is not None and name != "oracle":
            write_image(f"{prefix}_{name}_depth.png", depth_preview(depth, scene.n_slices))
        panels[name] = composite[window]
    write_image(f"{prefix}_crop.png", crop_strip(panels))


@dataclass
class MovedTruth:
    """A scene rendered twice: still, and moved by known transforms with flicker."""

    still: np.ndarray  # (Z, M, N[, 3]) scene dtype: no motion, no flicker
    moved: np.ndarray  # the same slices moved by `transforms` and divided by `gains`
    sharp: np.ndarray  # (M, N[, 3]) float truth, in the reference frame
    transforms: list[np.ndarray]  # per slice: reference (row, col, 1) -> slice (row, col, 1)
    gains: np.ndarray  # per slice, the factor that brings it back to the reference's exposure
    interior: np.ndarray  # (M, N) bool, ALIGN_BORDER excluded
    common: np.ndarray  # (M, N) bool, interior pixels every moved slice covers


@dataclass
class AlignRow:
    """Alignment scores on one moved scene."""

    scene: Scene
    motion: Motion
    shape: tuple[int, int]
    err_max: float  # px, RMS over the frame grid, worst slice
    err_mean: float  # px, mean over the non-reference slices
    gain_err: float  # max |estimated - true| gain
    psnr_aligned: float
    psnr_still: float
    psnr_none: float
    psnr_true: float  # merge(moved) given the true transforms: the resampling floor
    coverage: float  # share of the PSNR region every moved slice covers
    false_motion: float  # px, worst RMS displacement estimated on the still stack
    t_none: float  # s, merge(still, align="none")
    t_still: float  # s, merge(still) with alignment
    t_moved: float  # s, merge(moved, crop=False) with alignment
    warnings: list[str]

    @property
    def gap(self) -> float:
        return self.psnr_still - self.psnr_aligned

    @property
    def overhead(self) -> float:
        return self.t_still / self.t_none - 1


def motion_transforms(
    motion: Motion, n: int, shape: tuple[int, int], reach: float = 1.0
) -> list[np.ndarray]:
    """The true per-slice matrices (reference -> slice); shifts multiplied by `reach`."""
    r = n // 2
    centre = (np.array(shape, dtype=np.float64) - 1) / 2
    out = []
    for k in range(n):
        t = (k - r) / max(r, n - 1 - r, 1)
        scale = 1 + motion.scale * (k - r) / max(n - 1, 1)
        a = np.deg2rad(motion.rotation * t)
        lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        shift = reach * np.array([motion.shift[0] * t, motion.shift[1] * t * (1 + t * t) / 2])
        matrix = np.eye(3)
        matrix[:2, :2] = lin
        matrix[:2, 2] = centre - lin @ centre + shift
        out.append(matrix)
    return out


def grid_points(shape: tuple[int, int]) -> np.ndarray:
    """(3, GRID**2) homogeneous (row, col, 1) points spanning the whole frame."""
    rr, cc = np.meshgrid(
        np.linspace(0, shape[0] - 1, GRID), np.linspace(0, shape[1] - 1, GRID), indexing="ij"
    )
    return np.stack([rr.ravel(), cc.ravel(), np.ones(rr.size)])


def transform_error(estimated: np.ndarray, true: np.ndarray, shape: tuple[int, int]) -> float:
    """RMS distance in pixels between where two matrices send the frame's grid points."""
    d = ((np.asarray(estimated) - true) @ grid_points(shape))[:2]
    return float(np.sqrt(np.mean(np.sum(d**2, axis=0))))


def covered(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reference-frame pixels whose source lies inside a slice of `shape`."""
    rr, cc = np.indices(shape, dtype=np.float64)
    src = np.tensordot(matrix[:2, :2], np.stack([rr, cc]), axes=1) + matrix[:2, 2, None, None]
    return ((src >= 0) & (src <= np.array(shape)[:, None, None] - 1)).all(axis=0)


def resample(
    image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int], order: int
) -> np.ndarray:
    """Spline-interpolate `image` (float, any channels) at ``matrix @ [r, c, 1]`` of a grid."""
    planes = np.asarray(image, np.float32).reshape(*image.shape[:2], -1)
    out = np.empty((*shape, planes.shape[-1]), np.float32)
    for ch in range(planes.shape[-1]):
        ndi.affine_transform(
            planes[..., ch],
            matrix[:2, :2],
            offset=matrix[:2, 2],
            output_shape=shape,
            output=out[..., ch],
            order=order,
            mode="nearest",
        )
    return out.reshape(*shape, *image.shape[2:])


def bin_pixels(image: np.ndarray, f: int) -> np.ndarray:
    """Means over f x f blocks: a sensor pixel integrating the fine image."""
    m, n = image.shape[0] // f, image.shape[1] // f
    return image[: m * f, : n * f].reshape(m, f, n, f, *image.shape[2:]).mean(axis=(1, 3))


def render_moved(scene: Scene, motion: Motion, shape: tuple[int, int]) -> MovedTruth:
    """Render a scene still and moved by known transforms, the way a camera would see them.

    The scene's texture and height field (the same generators and seeds as :func:`render`)
    are made over a frame widened by the motion's reach, upsampled SUPERSAMPLE x (cubic
    spline: the detail stays within the native Nyquist limit) and rendered noise-free at that
    resolution, defocus scaled alike. A still slice is that render binned back to pixels; a
    moved slice k is the render sampled at ``inv(T_k)`` (in fine pixels, cubic spline) and
    then binned, so T_k maps reference to slice coordinates as in ``MergeResult.transforms``
    and the moved scene content beyond the frame is real. Binning is the sensor integrating
    over its pixels, and motion at the fine resolution costs no detail, so the still and
    moved slices are equally sharp. Moved slices are divided by their gain; sensor noise (the
    scene's model, the same draw for both stacks) is added last, then both stacks are clipped
    and cast to the scene's dtype. The truth is the upsampled texture binned.
    """
    n, f = scene.n_slices, SUPERSAMPLE
    transforms = motion_transforms(motion, n, shape, min(shape) / min(scene.shape))
    corners = grid_points(shape)[:, [0, GRID - 1, -GRID, -1]]
    margin = 0.0
    for matrix in transforms:
        src = (np.linalg.inv(matrix) @ corners)[:2]
        margin = max(margin, -src.min(), (src - (np.array(shape)[:, None] - 1)).max())
    margin = int(np.ceil(margin)) + 4  # and the spline's support
    wide = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    sharp = synthetic.texture(wide, channels=scene.channels, seed=scene.seed)
    field = synthetic.height_field(scene.kind, wide, seed=scene.seed)
    height = MARGIN + field.astype(np.float64) * (scene.n_slices - 1 - 2 * MARGIN)

    def fine(offset: float) -> np.ndarray:
        """Native (row, col, 1), shifted by `offset` px, to fine-pixel coordinates."""
        return np.array(
            [[f, 0, f * offset + (f - 1) / 2], [0, f, f * offset + (f - 1) / 2], [0, 0, 1]]
        )

    fine_wide, fine_frame = (f * wide[0], f * wide[1]), (f * shape[0], f * shape[1])
    sharp = np.clip(resample(sharp, np.linalg.inv(fine(0)), fine_wide, 3), 0, 1)
    # Linear for the heights: a spline would ring at the terraces' steps.
    height = resample(height, np.linalg.inv(fine(0)), fine_wide, 1)
    clean = synthetic.render_stack(
        sharp,
        height,
        n,
        blur_per_slice=f * scene.blur,
        noise=0.0,
        dtype=np.float32,
        layers_per_slice=FINE_LAYERS,
    )
    inner = (
        slice(f * margin, f * margin + fine_frame[0]),
        slice(f * margin, f * margin + fine_frame[1]),
    )
    rng = np.random.default_rng(scene.seed + 1000)
    gains = rng.uniform(1 - FLICKER, 1 + FLICKER, n)
    gains[n // 2] = 1.0
    dtype = np.dtype(scene.dtype)
    top = np.iinfo(dtype).max if dtype.kind == "u" else 1.0

    def capture(image: np.ndarray, z: np.ndarray) -> np.ndarray:
        image = image + scene.noise * np.sqrt(1 + np.clip(image, 0, 1)) * z
        image = np.clip(image, 0, 1)
        return (np.rint(image * top) if dtype.kind == "u" else image).astype(dtype)

    still = np.empty((n, *shape, *clean.shape[3:]), dtype)
    moved = np.empty_like(still)
    for k in range(n):
        z = rng.standard_normal(still.shape[1:], dtype=np.float32)
        still[k] = capture(bin_pixels(clean[k][inner], f), z)
        # Fine frame pixel -> native frame -> where the slice saw it -> fine wide render.
        matrix = fine(margin) @ np.linalg.inv(transforms[k]) @ np.linalg.inv(fine(0))
        image = bin_pixels(resample(clean[k], matrix, fine_frame, 3), f)
        moved[k] = capture(image / np.float32(gains[k]), z)
    interior = np.zeros(shape, bool)
    interior[ALIGN_BORDER:-ALIGN_BORDER, ALIGN_BORDER:-ALIGN_BORDER] = True
    common = interior.copy()
    for matrix in transforms:
        common &= covered(matrix, shape)
    truth = bin_pixels(sharp[inner], f).astype(np.float64)
    return MovedTruth(still, moved, truth, transforms, gains, interior, common)


def timed_merge(stack: np.ndarray, repeats: int = 1, **options) -> tuple:
    """``stacker.merge(stack, **options)``, its best wall time of `repeats` and its warnings."""
    best = np.inf
    for _ in range(repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            result = stacker.merge(stack, **options)
            best = min(best, time.perf_counter() - start)
    return result, best, [str(w.message) for w in caught]


def run_align_scene(
    scene: Scene, motion: Motion, shape: tuple[int, int], save_dir: Path | None
) -> AlignRow:
    """Render one scene still and moved, merge both ways, score alignment and composites."""
    start = time.perf_counter()
    truth = render_moved(scene, motion, shape)
    n, ref = scene.n_slices, scene.n_slices // 2
    coverage = float(truth.common.sum() / truth.interior.sum())
    log(
        f"align {scene.name}: rendered 2 x {truth.moved.shape} {truth.moved.dtype} in "
        f"{time.perf_counter() - start:.1f} s; {100 * coverage:.1f}% of the scored interior "
        "covered by every moved slice"
    )
    # Timings on the still stack, best of two: the same merge with and without alignment.
    _, t_none, _ = timed_merge(truth.still, 2, align="none")
    still, t_still, notes = timed_merge(truth.still, 2, crop=False)
    aligned, t_moved, caught = timed_merge(truth.moved, crop=False)
    plain, _, _ = timed_merge(truth.moved, align="none", brightness=False)
    given, _, _ = timed_merge(truth.moved, transforms=truth.transforms, crop=False)
    notes = [f"still: {m}" for m in notes] + [f"moved: {m}" for m in caught]
    full = (slice(0, shape[0]), slice(0, shape[1]))
    for result in (still, aligned, given):
        if tuple(result.crop) != full or len(result.transforms) != n:
            raise RuntimeError(f"{scene.name}: crop=False must keep the whole frame, all slices")
    errors = [
        transform_error(m, t, shape)
        for m, t in zip(aligned.transforms, truth.transforms, strict=True)
    ]
    others = [e for k, e in enumerate(errors) if k != ref]
    outputs = {"aligned": aligned, "still": still, "not aligned": plain, "true transforms": given}
    scores = {
        name: psnr(as_float(r.composite), truth.sharp, truth.interior)
        for name, r in outputs.items()
    }
    row = AlignRow(
        scene,
        motion,
        shape,
        max(errors),
        float(np.mean(others)),
        float(np.max(np.abs(np.array(aligned.gains) - truth.gains))),
        scores["aligned"],
        scores["still"],
        scores["not aligned"],
        scores["true transforms"],
        coverage,
        max(transform_error(m, np.eye(3), shape) for m in still.transforms),
        t_none,
        t_still,
        t_moved,
        notes,
    )
    log(
        f"  transforms: RMS error max {row.err_max:.2f} px (slice "
        f"{int(np.argmax(errors))}), mean {row.err_mean:.2f} px; per slice "
        + " ".join(f"{e:.2f}" for e in errors)
    )
    log(
        f"  gains: max error {row.gain_err:.4f}; PSNR aligned {row.psnr_aligned:.2f}, still "
        f"{row.psnr_still:.2f}, true transforms {row.psnr_true:.2f}, not aligned "
        f"{row.psnr_none:.2f} dB; merge {t_none:.2f} s "
        f"(align none) / {t_still:.2f} s (aligned, still) / {t_moved:.2f} s (aligned, moved)"
    )
    for note in notes:
        log(f"  warning: {note}")
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        prefix = save_dir / f"align_{scene.name}"
        sharp = convert_dtype(truth.sharp.astype(np.float32), scene.dtype)
        write_image(f"{prefix}_truth.png", sharp)
        write_image(f"{prefix}_reference_slice.png", truth.moved[ref])
        window = (slice(ALIGN_BORDER, ALIGN_BORDER + CROP),) * 2  # top-left: most motion
        panels = {"truth": sharp[window]}
        for name, result in outputs.items():
            write_image(f"{prefix}_{name.replace(' ', '_')}.png", result.composite)
            panels[name] = result.composite[window]
        write_image(f"{prefix}_crop.png", crop_strip(panels))
    return row


def describe_motion(motion: Motion, reach: float) -> str:
    """The motion in a table cell."""
    rows, cols = (reach * s for s in motion.shift)
    return (
        f"scale {100 * motion.scale:g}%, shift {rows:+.0f}/{cols:+.0f} px, "
        f"turn {motion.rotation:+g} deg"
    )


def align_table(rows: list[AlignRow]) -> str:
    """The alignment results as a markdown table."""
    headers = [
        "scene",
        "slices",
        "motion at the far end",
        "transform error max / mean (px)",
        "gain error max",
        "PSNR still (dB)",
        "PSNR aligned (dB)",
        "gap (dB)",
        "PSNR true transforms (dB)",
        "PSNR not aligned (dB)",
        "false motion, still (px)",
        "merge none / aligned (s)",
        "alignment overhead",
        "merge moved (s)",
    ]
    lines = [headers, ["---"] * 3 + ["---:"] * (len(headers) - 3)]
    for r in rows:
        s = r.scene
        kind = f"{'RGB' if s.channels else 'grey'} {np.dtype(s.dtype).itemsize * 8}-bit"
        lines.append(
            [
                s.name,
                f"{s.n_slices} x {r.shape[0]}x{r.shape[1]} {kind}",
                describe_motion(r.motion, min(r.shape) / min(s.shape)),
                f"{r.err_max:.2f} / {r.err_mean:.2f}",
                f"{r.gain_err:.4f}",
                f"{r.psnr_still:.2f}",
                f"{r.psnr_aligned:.2f}",
                f"{r.gap:+.2f}",
                f"{r.psnr_true:.2f} ({r.psnr_still - r.psnr_true:+.2f})",
                f"{r.psnr_none:.2f}",
                f"{r.false_motion:.2f}",
                f"{r.t_none:.2f} / {r.t_still:.2f}",
                f"{100 * r.overhead:+.0f}%",
                f"{r.t_moved:.2f}",
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def align_bars(rows: list[AlignRow]) -> list[str]:
    """One line per scene: the PSNR gap and time overhead against their bars."""
    lines = []
    for r in rows:
        gap_ok, time_ok = r.gap <= GAP_BAR, r.overhead <= OVERHEAD_BAR
        verdict = "pass" if gap_ok and time_ok else "**miss**"
        lines.append(
            f"- **{r.scene.name}**: {verdict}: gap {r.gap:+.2f} dB (bar {GAP_BAR} dB; "
            f"{r.psnr_still - r.psnr_true:+.2f} dB of it with the true transforms) "
            f"{'ok' if gap_ok else 'missed'}; alignment overhead {100 * r.overhead:+.0f}% "
            f"(bar {100 * OVERHEAD_BAR:.0f}%) {'ok' if time_ok else 'missed'}"
            + "".join(f"; warning: {w}" for w in r.warnings)
        )
    return lines


def align_caption(rows: list[AlignRow]) -> str:
    """How the alignment table was made and what its columns mean."""
    command = " ".join(["python scripts/bench_quality.py", *sys.argv[1:]])
    coverage = min(r.coverage for r in rows)
    return (
        f"**Alignment** (`{command}`, {time.strftime('%Y-%m-%d')}, stacker "
        f"{stacker.__version__}). Each scene (the generators and seeds above, noise "
        f"{rows[0].scene.noise}) is rendered noise-free {SUPERSAMPLE}x finer than its pixels "
        f"(texture upsampled by cubic spline, {FINE_LAYERS} depth layers per slice) and seen "
        f"twice by a simulated sensor that bins the fine render to pixels: still, and moved, "
        f"slice k through a known similarity T_k (reference r = n//2, the identity; T_k maps "
        f"reference (row, col, 1) to slice (row, col, 1) as `MergeResult.transforms` does) "
        f"about the frame centre: scale 1 + s(k-r) with the listed total change over the "
        f"stack, a drift linear in k in rows and cubic in columns and a turn linear in k, "
        f"both reaching the listed values at the far end; slice k = the fine render sampled "
        f"at inv(T_k) (cubic spline, so the motion costs no detail), binned, divided by a "
        f"flicker gain drawn in [{1 - FLICKER:g}, {1 + FLICKER:g}] (reference 1), plus sensor "
        f"noise (the same draw in both stacks), clipped and cast. Transform error: RMS of "
        f"|T_est p - T_k p| over a {GRID}x{GRID} grid spanning the frame, in pixels, worst "
        f"slice / mean over the moved slices. Gain error: max over slices of |estimated - "
        f"true gain|. PSNR against the sharp truth in the reference frame over all pixels but "
        f"a {ALIGN_BORDER}-px border (every moved slice covers at least {100 * coverage:.0f}% "
        f"of that region), method depthmap: still = `merge(still, crop=False)` (the target); "
        f"aligned = `merge(moved, crop=False)`; gap = still - aligned (bar {GAP_BAR} dB); "
        f"true transforms = `merge(moved, transforms=T, crop=False)` (in brackets: its gap, "
        f"what the moved stack costs with exact transforms); "
        f'not aligned = `merge(moved, align="none", brightness=False)`. False motion: worst '
        f"RMS displacement of the transforms estimated on the still stack. Merge times, "
        f"best of two on {os.cpu_count()} cores, "
        f'on the still stack with `align="none"` and with the default alignment; overhead = '
        f"their ratio - 1 (bar {100 * OVERHEAD_BAR:.0f}%); merge moved: the aligned merge of "
        f"the moved stack (one run)."
    )


def fmt(value: float | None, spec: str) -> str:
    """Format a number, or '-' where the metric does not apply."""
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    """The results as a markdown table."""
    headers = [
        "scene",
        "method",
        "PSNR (dB)",
        "SSIM",
        "halo PSNR (dB)",
        "depth RMSE (slices)",
        "within 1 slice (%)",
        "time (s)",
    ]
    lines = [headers, ["---"] * 2 + ["---:"] * (len(headers) - 2)]
    for r in rows:
        lines.append(
            [
                r.scene,
                r.method,
                fmt(r.psnr, ".2f"),
                fmt(r.ssim, ".4f"),
                fmt(r.halo_psnr, ".2f"),
                fmt(r.depth_rmse, ".2f"),
                fmt(r.within_one, ".1f"),
                fmt(r.seconds, ".2f"),
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def summary(rows: list[Row], scenes: list[Scene]) -> list[str]:
    """Per half of the scenes, one line per method: mean PSNR, halo PSNR and depth error."""
    half = {s.name: s.half for s in scenes}
    lines = []
    for part in HALVES:
        mine = [r for r in rows if half[r.scene] == part]
        if not mine:
            continue
        best = {}
        for r in mine:
            if r.method in METHODS:
                best[r.scene] = max(best.get(r.scene, -np.inf), r.psnr)
        lines.append(f"**{part} half** ({len(best)} scenes):")
        for method in dict.fromkeys(r.method for r in mine):
            own = [r for r in mine if r.method == method]
            cells = [f"mean PSNR {np.mean([r.psnr for r in own]):.2f} dB"]
            halos = [r.halo_psnr for r in own if r.halo_psnr is not None]
            if halos:
                cells.append(f"halo {np.mean(halos):.2f} dB")
            depths = [r for r in own if r.depth_rmse is not None]
            if depths:
                cells.append(
                    f"depth RMSE {np.mean([r.depth_rmse for r in depths]):.2f}, "
                    f"{np.mean([r.within_one for r in depths]):.1f}% within 1 slice"
                )
            if method in METHODS:
                worst = min(r.psnr - best[r.scene] for r in own)
                cells.append(f"worst scene {worst:+.2f} dB from the best method")
            lines.append(f"- **{method}**: " + "; ".join(cells))
    return lines


def caption(scenes: list[Scene], quick: bool) -> str:
    """What was run, when, and how the metrics are defined."""
    command = " ".join(["python scripts/bench_quality.py", *sys.argv[1:]])
    described = "; ".join(
        f"{s.name}: {'x'.join(map(str, QUICK_SHAPE if quick else s.shape))}, {s.n_slices} "
        f"slices, {'RGB' if s.channels else 'grey'} {np.dtype(s.dtype).itemsize * 8}-bit, "
        f"blur {s.blur} px/slice, noise {s.noise}"
        + (f", photo {s.photo}" + (f" behind {s.front}" if s.front else "") if s.photo else "")
        + (f", {s.highlights} glints" if s.highlights else "")
        + (f", JPEG q{s.jpeg}" if s.jpeg else "")
        + f", {s.half} half"
        for s in scenes
    )
    return (
        f"`{command}` ({time.strftime('%Y-%m-%d')}, stacker {stacker.__version__}). "
        f"Scenes ({described}) rendered by `stacker.synthetic` from its procedural texture or "
        f"a photograph of `skimage.data` (scripts/photo_scenes.py), heights spanning {MARGIN} .. "
        f"n-{1 + MARGIN} slices. "
        f"PSNR and SSIM (luma, Gaussian window sigma 1.5) against the sharp truth, all pixels "
        f"but a {BORDER}-px border; halo PSNR within {HALO_RADIUS} px of true height jumps "
        f"> {EDGE_JUMP} slice (scenes with depth edges only); depth metrics on textured pixels "
        f"only (local std of the truth's luma, Gaussian sigma {TEXTURE_SIGMA:g}, above "
        f"{TEXTURE_STD}). oracle: each pixel from the slice nearest its true height; enfuse: "
        "`--exposure-weight=0 --saturation-weight=0 --contrast-weight=1 --hard-mask`, time is "
        "the enfuse process alone; openfocus (when $OPENFOCUS or `openfocus` is found): its "
        "default model, `--cpu --no-exposure-match`, depth read from its grey map (quantised "
        "to (n-1)/255 slice), time is the process with torch start-up."
    )


def log(message: str) -> None:
    """Progress to stderr, so stdout is only the markdown."""
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Score every merge method, and alignment, against synthetic ground truth.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = list(dict.fromkeys([s.name for s in SCENES] + [s.name for s, _ in ALIGN_SCENES]))
    parser.add_argument(
        "--scenes",
        nargs="+",
        choices=names,
        default=names,
        help="scenes to run (in both tables where a name is in both)",
    )
    parser.add_argument(
        "--half",
        choices=(*HALVES, "all"),
        default="all",
        help="methods table: only the scenes of this half (tune on 'tune' only)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the markdown here")
    parser.add_argument(
        "--save-dir", type=Path, help="save truth, composites, depth previews and crops as PNG here"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: every scene at {QUICK_SHAPE[0]}x{QUICK_SHAPE[1]}",
    )
    part = parser.add_mutually_exclusive_group()
    part.add_argument(
        "--alignment-only",
        action="store_true",
        help="only the alignment table (known motion and flicker)",
    )
    part.add_argument(
        "--no-alignment", action="store_true", help="only the methods table (still stacks)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen scenes, print the markdown and optionally save it."""
    args = parse_args(argv)
    scenes = (
        []
        if args.alignment_only
        else [s for s in SCENES if s.name in args.scenes and args.half in ("all", s.half)]
    )
    moving = [] if args.no_alignment else [(s, m) for s, m in ALIGN_SCENES if s.name in args.scenes]
    if not scenes and not moving:
        sys.exit("bench_quality.py: error: no scene of --scenes is in the chosen table")
    start = time.perf_counter()
    parts = []
    if scenes:
        rows = []
        for scene in scenes:
            rows += run_scene(scene, QUICK_SHAPE if args.quick else scene.shape, args.save_dir)
        parts += [caption(scenes, args.quick), "", table(rows), "", *summary(rows, scenes)]
    if moving:
        align_rows = [
            run_align_scene(
                scene, motion, QUICK_SHAPE if args.quick else scene.shape, args.save_dir
            )
            for scene, motion in moving
        ]
        parts += [""] * bool(parts) + [
            align_caption(align_rows),
            "",
            align_table(align_rows),
            "",
            *align_bars(align_rows),
        ]
    log(f"total {time.perf_counter() - start:.0f} s")
    text = "\n".join(parts) + "\n"
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
        log(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    main()
