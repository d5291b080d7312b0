"""Depth maps: encodings for saving, and a colour preview a person can read."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["DEPTH_FORMATS", "depth_preview", "encode_depth"]

DEPTH_FORMATS = ("index", "float")

# Viridis at nine evenly spaced stops: perceptually uniform and readable in greyscale.
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float32,
)


def _colormap(t: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis RGB uint8."""
    pos = np.clip(t, 0, 1) * (len(_VIRIDIS) - 1)
    lo = np.minimum(pos.astype(np.intp), len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


def encode_depth(depth: np.ndarray, depth_format: str = "index") -> np.ndarray:
    """Convert a depth map to the array written to disk.

    Parameters
    ----------
    depth : (M, N) ndarray
        Depth in slice units (0 = first slice).
    depth_format : {'index', 'float'}
        ``'index'``: the nearest whole slice as uint16 (for PNG or TIFF);
        ``'float'``: float32 slice units (TIFF only), keeping sub-slice depth.

    Returns
    -------
    encoded : (M, N) ndarray of uint16 or float32
    """
    if depth_format not in DEPTH_FORMATS:
        raise ValueError(f"depth_format must be one of {DEPTH_FORMATS}, got {depth_format!r}")
    if depth_format == "float":
        return depth.astype(np.float32)
    return np.clip(np.rint(depth), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def depth_preview(depth: np.ndarray, n_slices: int) -> np.ndarray:
    """Colour-map a depth map and add a labelled colour scale on the right.

    Parameters
    ----------
    depth : (M, N) ndarray
        Depth in slice units, ``0 .. n_slices - 1``.
    n_slices : int
        Number of slices in the stack (sets the colour range).

    Returns
    -------
    preview : (M, N + W, 3) ndarray of uint8
        Viridis colours (dark = first slice, yellow = last) and a scale bar
        of width ``W`` labelled with slice numbers.

    Examples
    --------
    >>> depth_preview(np.zeros((100, 100)), 5).shape[:2]
    (100, 160)
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be 2-D (M, N), got shape {depth.shape}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    top = max(n_slices - 1, 1)
    rows, cols = depth.shape
    colours = _colormap(depth / top)

    # The scale: a gradient bar (last slice at the top) and slice labels beside it.
    bar_w = max(12, cols // 40)
    label_w = max(48, cols // 10)
    font_size = int(np.clip(rows // 30, 10, 48))
    margin = font_size
    panel = np.full((rows, bar_w + label_w, 3), 255, dtype=np.uint8)
    span = max(rows - 2 * margin, 1)
    ramp = 1 - np.clip((np.arange(rows) - margin) / span, 0, 1)
    panel[:, 4:bar_w, :] = _colormap(ramp)[:, None, :]
    panel[:margin, 4:bar_w] = 255
    panel[rows - margin :, 4:bar_w] = 255
    img = Image.fromarray(panel)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size)
    ticks = sorted({0, top // 2, top}) if n_slices > 1 else [0]
    for tick in ticks:
        y = margin + (1 - tick / top) * span
        draw.line([(bar_w, y), (bar_w + 4, y)], fill=(0, 0, 0))
        draw.text((bar_w + 6, y), str(tick), fill=(0, 0, 0), font=font, anchor="lm")
    return np.concatenate([colours, np.asarray(img)], axis=1)
