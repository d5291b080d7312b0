"""Depth error of every method on the published ground-truth stacks of Cou & Guennebaud (2023).

``../shared/stacks/synthetic_gt_wlls`` (beside the project folder, or ``$STACKER_SHARED_STACKS``)
holds six 41-slice 400x400 grey JPEG stacks rendered over known surfaces, with the depth of
each pixel of the central 359x359 crop as a slice index (``gt_depth_slice_index.tif``, pixel
(r, c) of the truth is image pixel (r + 20, c + 20)). Their paper's WLLS method reaches a mean
RMSE of 0.128 slice with edge-aware smoothing. Each stack is merged from its files with
``--align none`` (the stacks do not move); the markdown table goes to stdout.

Usage::

    python scripts/bench_wlls.py
    python scripts/bench_wlls.py --methods depthmap
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

import stacker
from stacker.pipeline import METHODS

OFFSET = 20  # image pixel of the truth's (0, 0)


def stacks_folder() -> Path:
    """Where the shared stacks are: $STACKER_SHARED_STACKS or ../shared/stacks."""
    root = os.environ.get("STACKER_SHARED_STACKS")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "stacks"
    return base / "synthetic_gt_wlls"


def depth_rmse(folder: Path, method: str) -> tuple[float, float]:
    """RMSE in slices of one stack's depth map against its truth, and the merge's seconds."""
    truth = tifffile.imread(folder / "gt_depth_slice_index.tif")
    start = time.perf_counter()
    result = stacker.merge(sorted(folder.glob("image_*.jpg")), method=method, align="none")
    seconds = time.perf_counter() - start
    rows, cols = truth.shape
    depth = result.depth[OFFSET : OFFSET + rows, OFFSET : OFFSET + cols]
    return float(np.sqrt(np.mean((depth - truth) ** 2))), seconds


def main(argv: list[str] | None = None) -> None:
    """Merge every stack with every method and print the RMSE table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args(argv)
    root = stacks_folder()
    folders = sorted(p for p in root.glob("stack*") if p.is_dir())
    if not folders:
        sys.exit(f"bench_wlls.py: no stacks in {root}")
    lines = [
        "| method | " + " | ".join(f.name for f in folders) + " | mean | seconds |",
        "| --- |" + " ---: |" * (len(folders) + 2),
    ]
    for method in args.methods:
        scores = [depth_rmse(folder, method) for folder in folders]
        rmse = [r for r, _ in scores]
        cells = [f"{r:.3f}" for r in rmse] + [f"{np.mean(rmse):.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {sum(s for _, s in scores):.1f} |")
    print(
        f"Depth RMSE (slices) on synthetic_gt_wlls, `python scripts/bench_wlls.py`, stacker "
        f"{stacker.__version__}; WLLS (Cou & Guennebaud 2023): 0.128 mean.\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
