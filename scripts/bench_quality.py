"""Ground-truth quality benchmark: every merge method on synthetic stacks with known answers.

Each scene is rendered deterministically with :mod:`stacker.synthetic` (a sharp texture over a
known height field, defocus blur, occlusion and sensor noise), merged with every method in
``stacker.pipeline.METHODS``, and scored against the truth: composite PSNR and SSIM against the
sharp image, PSNR in a band around depth discontinuities (halos), and depth error on textured
pixels. Two references are added as rows: ``oracle`` (each pixel from the slice nearest its
true height, the best a hard pick can do) and ``enfuse`` (when the binary is installed).

The markdown result (caption, table, per-method summary) goes to stdout; progress to stderr.

Usage::

    python scripts/bench_quality.py                      # full run, a few minutes on 2 cores
    python scripts/bench_quality.py --markdown quality.md --save-dir /tmp/quality
    python scripts/bench_quality.py --scenes terraces object
    python scripts/bench_quality.py --quick              # tiny smoke run
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

import stacker
from stacker import synthetic
from stacker.depth import depth_preview
from stacker.io import convert_dtype, write_image
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


SCENES = (
    Scene("plane", "plane", (384, 384), 12, None, np.uint8, blur=1.5, seed=3),
    Scene("dome", "dome", (384, 384), 16, 3, np.uint8, blur=1.2, seed=2),
    # Seed 1 gives 4 terraces: none at height 4.5, where slices 4 and 5 would tie.
    Scene("terraces", "terraces", (384, 384), 10, None, np.uint16, blur=2.0, edges=True, seed=1),
    Scene("object", "object", (384, 384), 8, 3, np.uint8, blur=1.8, edges=True, seed=4),
    Scene("smooth", "smooth", (256, 256), 40, 3, np.uint8, blur=1.0, seed=5),
    Scene("smooth-noisy", "smooth", (256, 256), 20, 3, np.uint8, blur=1.5, noise=0.03, seed=6),
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
    sharp = synthetic.texture(shape, channels=scene.channels, seed=scene.seed)
    field = synthetic.height_field(scene.kind, shape, seed=scene.seed)
    height = MARGIN + field.astype(np.float64) * (scene.n_slices - 1 - 2 * MARGIN)
    stack = synthetic.render_stack(
        sharp, height, scene.n_slices, blur_per_slice=scene.blur, noise=scene.noise,
        seed=scene.seed, dtype=scene.dtype,
    )
    interior = np.zeros(shape, bool)
    interior[BORDER:-BORDER, BORDER:-BORDER] = True
    y = luma(sharp)
    mean = ndi.gaussian_filter(y, TEXTURE_SIGMA)
    std = np.sqrt(np.maximum(ndi.gaussian_filter(y * y, TEXTURE_SIGMA) - mean**2, 0))
    halo = None
    if scene.edges:
        halo = interior & (ndi.distance_transform_edt(~depth_edges(height)) <= HALO_RADIUS)
    return Truth(stack, sharp.astype(np.float64), height, interior,
                 interior & (std > TEXTURE_STD), halo)


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


def score(scene: Scene, truth: Truth, method: str, composite: np.ndarray,
          depth: np.ndarray | None, seconds: float | None) -> Row:
    """Compare one composite (and depth map, if any) with the truth."""
    image = as_float(composite)
    halo = None if truth.halo is None else psnr(image, truth.sharp, truth.halo)
    rmse = within = None
    if depth is not None:
        err = depth[truth.textured] - truth.height[truth.textured]
        rmse = float(np.sqrt(np.mean(err**2)))
        within = float(100 * np.mean(np.abs(err) <= 1))
    return Row(scene.name, method, psnr(image, truth.sharp, truth.interior),
               ssim(image, truth.sharp, truth.interior), halo, rmse, within, seconds)


def enfuse_merge(stack: np.ndarray) -> tuple[np.ndarray, float]:
    """Fuse the slices with enfuse's hard-mask contrast weighting; return it and its time.

    Slices go through TIFF in their own bit depth; the time covers the enfuse process only.
    """
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        paths = [str(Path(tmp) / f"slice_{k:03d}.tif") for k in range(len(stack))]
        for path, image in zip(paths, stack, strict=True):
            write_image(path, image)
        out = str(Path(tmp) / "out.tif")
        cmd = ["enfuse", "--exposure-weight=0", "--saturation-weight=0",
               "--contrast-weight=1", "--hard-mask", "-o", out, *paths]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        fused = tifffile.imread(out)
    # enfuse adds an alpha channel: grey comes back (M, N, 2), RGB (M, N, 4).
    return (fused[..., 0] if stack.ndim == 3 else fused[..., :3]), seconds


def run_scene(scene: Scene, shape: tuple[int, int], save_dir: Path | None) -> list[Row]:
    """Render one scene, run every method and reference, score and optionally save them."""
    start = time.perf_counter()
    truth = render(scene, shape)
    log(f"{scene.name}: rendered {truth.stack.shape} {truth.stack.dtype} in "
        f"{time.perf_counter() - start:.1f} s; "
        f"{100 * truth.textured.sum() / truth.interior.sum():.0f}% of the interior textured")
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


def save_outputs(save_dir: Path, scene: Scene, truth: Truth,
                 outputs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
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


def fmt(value: float | None, spec: str) -> str:
    """Format a number, or '-' where the metric does not apply."""
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    """The results as a markdown table."""
    headers = ["scene", "method", "PSNR (dB)", "SSIM", "halo PSNR (dB)", "depth RMSE (slices)",
               "within 1 slice (%)", "time (s)"]
    lines = [headers, ["---"] * 2 + ["---:"] * (len(headers) - 2)]
    for r in rows:
        lines.append([r.scene, r.method, fmt(r.psnr, ".2f"), fmt(r.ssim, ".4f"),
                      fmt(r.halo_psnr, ".2f"), fmt(r.depth_rmse, ".2f"),
                      fmt(r.within_one, ".1f"), fmt(r.seconds, ".2f")])
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def summary(rows: list[Row]) -> list[str]:
    """One line per method: mean PSNR over scenes and mean difference from argmax."""
    base = {r.scene: r.psnr for r in rows if r.method == "argmax"}
    lines = []
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        mean = np.mean([r.psnr for r in mine])
        deltas = [r.psnr - base[r.scene] for r in mine if r.scene in base]
        delta = f", {np.mean(deltas):+.2f} dB vs argmax" if deltas and method != "argmax" else ""
        scenes = f"{len(mine)} scene" + "s" * (len(mine) > 1)
        lines.append(f"- **{method}**: mean PSNR {mean:.2f} dB over {scenes}{delta}")
    return lines


def caption(scenes: list[Scene], quick: bool) -> str:
    """What was run, when, and how the metrics are defined."""
    command = " ".join(["python scripts/bench_quality.py", *sys.argv[1:]])
    described = "; ".join(
        f"{s.name}: {'x'.join(map(str, QUICK_SHAPE if quick else s.shape))}, {s.n_slices} "
        f"slices, {'RGB' if s.channels else 'grey'} {np.dtype(s.dtype).itemsize * 8}-bit, "
        f"blur {s.blur} px/slice, noise {s.noise}"
        for s in scenes
    )
    return (
        f"`{command}` ({time.strftime('%Y-%m-%d')}, stacker {stacker.__version__}). "
        f"Scenes ({described}) rendered by `stacker.synthetic`, heights spanning {MARGIN} .. "
        f"n-{1 + MARGIN} slices. "
        f"PSNR and SSIM (luma, Gaussian window sigma 1.5) against the sharp truth, all pixels "
        f"but a {BORDER}-px border; halo PSNR within {HALO_RADIUS} px of true height jumps "
        f"> {EDGE_JUMP} slice (scenes with depth edges only); depth metrics on textured pixels "
        f"only (local std of the truth's luma, Gaussian sigma {TEXTURE_SIGMA:g}, above "
        f"{TEXTURE_STD}). oracle: each pixel from the slice nearest its true height; enfuse: "
        "`--exposure-weight=0 --saturation-weight=0 --contrast-weight=1 --hard-mask`, time is "
        "the enfuse process alone."
    )


def log(message: str) -> None:
    """Progress to stderr, so stdout is only the markdown."""
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Score every merge method against synthetic ground truth.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = [s.name for s in SCENES]
    parser.add_argument("--scenes", nargs="+", choices=names, default=names,
                        help="scenes to run")
    parser.add_argument("--markdown", type=Path, help="also write the markdown here")
    parser.add_argument("--save-dir", type=Path,
                        help="save truth, composites, depth previews and crops as PNG here")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: every scene at {QUICK_SHAPE[0]}x{QUICK_SHAPE[1]}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen scenes, print the markdown and optionally save it."""
    args = parse_args(argv)
    scenes = [s for s in SCENES if s.name in args.scenes]
    start = time.perf_counter()
    rows = []
    for scene in scenes:
        rows += run_scene(scene, QUICK_SHAPE if args.quick else scene.shape, args.save_dir)
    log(f"total {time.perf_counter() - start:.0f} s")
    text = "\n".join([caption(scenes, args.quick), "", table(rows), "", *summary(rows)]) + "\n"
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
        log(f"markdown written to {args.markdown}")


if __name__ == "__main__":
    main()
