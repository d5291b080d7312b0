"""Per-pixel selection of the sharpest slice, computed while streaming."""

from __future__ import annotations

import numpy as np

__all__ = ["ArgmaxSelector", "select_sharpest"]


class ArgmaxSelector:
    """Running per-pixel argmax of focus over the slices seen so far.

    Only the best value and its slice index are kept, so memory does not
    depend on the number of slices. Ties go to the lower slice index.

    Parameters
    ----------
    shape : tuple of int
        ``(M, N)``, the shape of one focus map.

    Attributes
    ----------
    index : (M, N) ndarray of uint16
        Slice index of the sharpest slice so far.
    value : (M, N) ndarray of float32
        Its focus value (``-inf`` before any update).
    count : int
        Number of slices seen.
    """

    def __init__(self, shape: tuple[int, int]):
        self.index = np.zeros(shape, dtype=np.uint16)
        self.value = np.full(shape, -np.inf, dtype=np.float32)
        self.count = 0

    def update(self, focus: np.ndarray) -> np.ndarray:
        """Take the next slice's focus map.

        Parameters
        ----------
        focus : (M, N) ndarray
            Focus values of slice number :attr:`count`.

        Returns
        -------
        won : (M, N) ndarray of bool
            Pixels where this slice is now the sharpest.
        """
        if focus.shape != self.value.shape:
            raise ValueError(f"focus map shape {focus.shape} != selector shape {self.value.shape}")
        if self.count >= np.iinfo(self.index.dtype).max:
            raise ValueError("too many slices: at most 65535 are supported")
        won = focus > self.value  # strict: ties keep the earlier (lower) index
        np.copyto(self.value, focus, where=won)
        self.index[won] = self.count
        self.count += 1
        return won


def select_sharpest(focus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel index and value of the sharpest slice.

    Parameters
    ----------
    focus : (Z, M, N) ndarray
        Focus measure of each slice (see :func:`stacker.focus.focus_measure`).

    Returns
    -------
    index : (M, N) ndarray of uint16
        Index of the slice with the highest focus; ties go to the lower index.
    value : (M, N) ndarray of float32
        The highest focus value.

    Examples
    --------
    >>> f = np.array([[[1.0, 5.0]], [[3.0, 5.0]]])
    >>> select_sharpest(f)[0]
    array([[1, 0]], dtype=uint16)
    """
    focus = np.asarray(focus)
    if focus.ndim != 3 or focus.shape[0] == 0:
        raise ValueError(f"focus must have shape (Z, M, N) with Z >= 1, got {focus.shape}")
    selector = ArgmaxSelector(focus.shape[1:])
    for plane in focus:
        selector.update(plane)
    return selector.index, selector.value
