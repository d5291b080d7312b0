"""Pixel value maths between dtypes: rescale between ranges, round and clip into integers.

Every stage that turns float results back into the input's dtype, or reads pixels in
another dtype's range, uses these; they belong to no one stage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["convert_dtype", "round_into"]


def convert_dtype(image: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Convert pixel values between uint8, uint16 and float32 ranges.

    Parameters
    ----------
    image : ndarray
        Pixels; integers use their type's full range, floats [0, 1].
    dtype : {'uint8', 'uint16', 'float32'}
        Target type.

    Returns
    -------
    converted : ndarray
        `image` rescaled (rounded, clipped) to `dtype`; `image` itself when it
        already has that dtype.

    Examples
    --------
    >>> convert_dtype(np.array([0.0, 0.5, 1.2], np.float32), "uint8")
    array([  0, 128, 255], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if image.dtype == dtype:
        return image
    if dtype.kind not in "uf":
        raise ValueError(f"dtype must be uint8, uint16 or float32, got {dtype}")
    src = image.astype(np.float32)
    if image.dtype.kind in "ui":
        src /= np.iinfo(image.dtype).max
    if dtype.kind in "ui":
        src *= np.iinfo(dtype).max
    return round_into(src, dtype).astype(dtype)


def round_into(values: np.ndarray, dtype: str | np.dtype) -> np.ndarray:
    """Round and clip float values, in place, to what an integer `dtype` can hold.

    Parameters
    ----------
    values : ndarray of float
        Values already in `dtype`'s units; changed in place.
    dtype : numpy dtype
        The type they are headed for; float types leave them as they are.

    Returns
    -------
    values : ndarray
        `values` itself, ready to be cast or assigned without wrapping around.

    Examples
    --------
    >>> round_into(np.array([-3.0, 7.6, 300.0]), np.uint8)
    array([  0.,   8., 255.])
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        np.clip(np.rint(values, out=values), info.min, info.max, out=values)
    return values
