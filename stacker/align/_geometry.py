"""The matrix convention of :mod:`stacker.align`: validation, change of grid, footprint."""

from __future__ import annotations

import numpy as np


def _check_matrix(matrix, name: str) -> np.ndarray:
    a = np.asarray(matrix, dtype=np.float64)
    ok = a.shape == (3, 3) and np.isfinite(a).all() and np.allclose(a[2], (0, 0, 1))
    if not ok or abs(np.linalg.det(a[:2, :2])) < 1e-9:
        raise ValueError(f"{name} must be an invertible 3x3 affine matrix (last row 0, 0, 1)")
    return a


def _scaled(matrix: np.ndarray, factor: float, centre: float = 0.0) -> np.ndarray:
    """`matrix` re-expressed on a grid whose pixel i sits at ``factor * i + centre`` here."""
    s = np.array([[factor, 0, centre], [0, factor, centre], [0, 0, 1]])
    return np.linalg.inv(s) @ matrix @ s


def _footprint(a: np.ndarray, out: tuple[int, int], size: tuple[int, int]):
    """Per row of the output frame, first and last column whose source lies inside `size`."""
    rows, eps = np.arange(out[0]), 1e-6  # eps: products of matrices blur exact edges
    lo, hi = np.zeros(out[0]), np.full(out[0], out[1] - 1.0)
    # The source (row, col) is affine in the column along an output row: each of its two
    # coordinates bounds the column from both sides.
    for (p, q, t), top in ((a[0], size[0] - 1), (a[1], size[1] - 1)):
        base = p * rows + t  # source coordinate at column 0
        if abs(q) < 1e-12:
            hi = np.where((base > -eps) & (base < top + eps), hi, -1.0)
        else:
            b1, b2 = (-eps - base) / q, (top + eps - base) / q
            lo, hi = np.maximum(lo, np.minimum(b1, b2)), np.minimum(hi, np.maximum(b1, b2))
    return np.ceil(lo), np.floor(hi)
