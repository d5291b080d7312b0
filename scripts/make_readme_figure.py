"""Draw ``docs/overview.png``: three slices of a sample stack, its composite and depth.

Usage::

    python scripts/make_readme_figure.py [--stack sample_stacks/dome_rgb]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import stacker
from stacker._dtype import convert_dtype
from stacker.depth import depth_preview
from stacker.io import open_stack

ROOT = Path(__file__).parents[1]


def _tile(image: np.ndarray, label: str, width: int) -> Image.Image:
    pic = Image.fromarray(convert_dtype(image, "uint8")).convert("RGB")
    pic = pic.resize((width, round(pic.height * width / pic.width)), Image.LANCZOS)
    canvas = Image.new("RGB", (pic.width, pic.height + 24), "white")
    canvas.paste(pic, (0, 24))
    ImageDraw.Draw(canvas).text((4, 4), label, fill="black", font=ImageFont.load_default(16))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=ROOT / "sample_stacks" / "dome_rgb")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "overview.png")
    args = parser.parse_args()
    stack = open_stack(args.stack)
    result = stacker.merge(stack)
    picks = [0, len(stack) // 2, len(stack) - 1]
    tiles = [_tile(stack[k], f"slice {k}", 256) for k in picks]
    tiles.append(_tile(result.composite, "composite", 256))
    tiles.append(_tile(depth_preview(result.depth, result.n_slices), "depth", 300))
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) - 1), height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 8
    sheet.save(args.out, optimize=True)


if __name__ == "__main__":
    main()
