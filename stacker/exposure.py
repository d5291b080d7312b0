"""Exposure: the brightness gain between slices, measured on block means.

Exposure flickers between the slices of a stack (shutter, flash, light
source). Defocus only moves light locally, so heavily low-passed images of
differently focused slices agree, and their ratio is the gain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .focus import to_gray

__all__ = ["block_mean", "estimate_gain"]


def estimate_gain(reference: np.ndarray, warped: np.ndarray, valid: np.ndarray) -> float:
    """Brightness gain that maps an aligned slice onto the reference (exposure flicker).

    Defocus moves light only locally, so heavily low-passed images agree between slices
    focused differently: the gain is the median ratio of the low-passed images over `valid`.

    Parameters
    ----------
    reference, warped : (M, N) or (M, N, 3) ndarray
        The reference slice and an aligned slice (see :func:`stacker.align.warp`).
    valid : (M, N) ndarray of bool
        Where `warped` holds image data.

    Returns
    -------
    gain : float
        Factor for `warped` to match `reference`; 1.0 when the overlap is too small to tell.

    Examples
    --------
    >>> ref = np.linspace(0.2, 0.8, 64 * 64).reshape(64, 64)
    >>> round(estimate_gain(ref, ref / 1.2, np.ones((64, 64), bool)), 3)
    1.2
    """
    ref, mov, valid = to_gray(reference), to_gray(warped), np.asarray(valid, dtype=bool)
    if ref.shape != mov.shape or valid.shape != ref.shape:
        shapes = f"{ref.shape}, {mov.shape}, {valid.shape}"
        raise ValueError(f"reference, warped and valid must share a shape, got {shapes}")
    if np.asarray(reference).dtype.kind in "ui":  # clipped highlights do not scale
        valid = valid & (ref < 0.99) & (mov < 0.99)
    k = int(np.ceil(max(ref.shape) / 256)) if ref.size else 1
    weight = block_mean(valid.astype(np.float32), k)
    if weight.size == 0:  # fewer rows or columns than a block: nothing to compare
        return 1.0
    sigma = max(weight.shape) / 32
    # Normalised convolution: invalid pixels neither count nor drag the means down.
    norm = ndi.gaussian_filter(weight, sigma)
    low = [ndi.gaussian_filter(block_mean(x * valid, k), sigma) for x in (ref, mov)]
    low = [x / np.maximum(norm, 1e-6) for x in low]
    ok = (norm > 0.5) & (low[1] > 0.02 * low[1].max())
    return float(np.median(low[0][ok] / low[1][ok])) if ok.sum() >= 16 else 1.0


def block_mean(gray: np.ndarray, k: int) -> np.ndarray:
    """Block means over k x k pixels; pixel i of the result is centred on pixel k*i + (k-1)/2.

    Parameters
    ----------
    gray : (M, N) ndarray
        Image (booleans count as 0 and 1).
    k : int
        Block size; rows and columns beyond a whole block are dropped.

    Returns
    -------
    small : (M // k, N // k) ndarray of float32

    Examples
    --------
    >>> block_mean(np.arange(20).reshape(4, 5), 2)
    array([[ 3.,  5.],
           [13., 15.]], dtype=float32)
    """
    h, w = gray.shape[0] // k * k, gray.shape[1] // k * k
    image = gray[:h, :w]
    if image.dtype == bool:
        image = image.view(np.uint8)
    kind = np.float32 if image.dtype.kind == "f" else np.int64
    # Rows first, then columns, k strided sums each: numpy reduces short inner
    # axes (a reshape's) four times slower, and k * k sums of single pixels
    # twice as slow. Each block sums in a fixed order, so tiles match the whole.
    rows = np.zeros((h // k, w), kind)
    for i in range(k):
        rows += image[i::k]
    total = np.zeros((h // k, w // k), kind)
    for j in range(k):
        total += rows[:, j::k]
    return np.divide(total, k * k, dtype=np.float32)
