"""Render the small synthetic stacks shipped in ``sample_stacks/``, with ground truth.

Usage::

    python scripts/make_sample_stacks.py [--out sample_stacks]

Each stack folder holds its slices and a ``truth/`` folder with the true depth
(``depth.tif``, float32, in slice units: slice k is in focus at depth k) and the
all-in-focus image (``sharp.png`` / ``sharp.tif``). Slices are rendered by
:func:`stacker.synthetic.render_stack`: disc-shaped defocus whose radius grows
linearly with distance from each slice's focal plane, occlusion by depth
layers, and sensor noise. Deterministic: the same files every run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile

from stacker._dtype import convert_dtype
from stacker.outputs import write_image
from stacker.synthetic import height_field, render_stack, texture

# name: (height kind, channels, slices, dtype, how the slices are stored, shape)
SAMPLES = {
    "dome_rgb": ("dome", 3, 10, np.uint8, "png", (384, 512)),
    "terraces_gray16": ("terraces", None, 10, np.uint16, "multipage-tif", (288, 384)),
    "plane_jpeg": ("plane", 3, 8, np.uint8, "jpg", (384, 512)),
}


def make_sample(out: Path, name: str, seed: int) -> None:
    """Render one sample stack and its truth into ``out / name``."""
    kind, channels, n, dtype, storage, shape = SAMPLES[name]
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "truth").mkdir(parents=True)
    sharp = texture(shape, channels=channels, seed=seed)
    # Leave half a slice at each end so the surface spans the focal range.
    depth = (0.5 + height_field(kind, shape, seed=seed) * (n - 2)).astype(np.float32)
    stack = render_stack(sharp, depth, n, blur_per_slice=1.5, noise=0.01, seed=seed, dtype=dtype)
    if storage == "multipage-tif":
        tifffile.imwrite(folder / "stack.tif", stack, photometric="minisblack", compression="zlib")
    else:
        for k, plane in enumerate(stack):
            write_image(folder / f"slice_{k + 1:02d}.{storage}", plane, quality=92)
    tifffile.imwrite(folder / "truth" / "depth.tif", depth, compression="zlib")
    sharp_name = "sharp.tif" if dtype == np.uint16 else "sharp.png"
    write_image(folder / "truth" / sharp_name, convert_dtype(sharp, dtype))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "sample_stacks")
    args = parser.parse_args()
    for seed, name in enumerate(SAMPLES, start=1):
        make_sample(args.out, name, seed)
        size = sum(p.stat().st_size for p in (args.out / name).rglob("*") if p.is_file())
        print(f"{name}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
