"""Separable filters that are faster than scipy's along the strided axis."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Columns filtered per contiguous block: 64 float32 columns of a tall frame stay
# in cache while scipy filters them.
_COLUMNS = 64


def gaussian(
    image: np.ndarray, sigma: float, *, truncate: float = 4.0, out: np.ndarray | None = None
) -> np.ndarray:
    """Gaussian filter of a 2-D float image, edges mirrored, as ``scipy.ndimage.gaussian_filter``.

    scipy filters along columns by gathering each strided column into a
    buffer, slowly; copied 64 columns at a time into a contiguous block, the
    columns are filtered twice as fast on 4 MP frames. Every column is
    filtered alike, so the blocks leave the result unchanged, and any part of
    an image filters as the whole does away from the part's edges.

    Parameters
    ----------
    image : (M, N) ndarray of float
        Image to filter.
    sigma : float
        Standard deviation in pixels.
    truncate : float, optional
        Kernel radius in standard deviations.
    out : (M, N) ndarray, optional
        Where to write the result (may be `image`).

    Returns
    -------
    filtered : (M, N) ndarray
        `out` if given.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    >>> bool(np.allclose(gaussian(x, 2.0), ndimage.gaussian_filter(x, 2.0), atol=1e-6))
    True
    """
    rows = ndimage.gaussian_filter1d(image, sigma, axis=1, mode="reflect", truncate=truncate)
    out = rows if out is None else out
    for c in range(0, image.shape[1], _COLUMNS):
        block = slice(c, c + _COLUMNS)
        out[:, block] = ndimage.gaussian_filter1d(
            np.ascontiguousarray(rows[:, block]), sigma, axis=0, mode="reflect", truncate=truncate
        )
    return out
