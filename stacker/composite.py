"""Build the all-in-focus composite from the per-pixel selection."""

from __future__ import annotations

import numpy as np

__all__ = ["HardPick", "composite_from_index"]


class HardPick:
    """Running composite that takes each pixel from its sharpest slice so far.

    Paired with :class:`stacker.select.ArgmaxSelector`: each slice's pixels
    are copied where that slice won, so memory is one output frame whatever
    the number of slices. The composite keeps the input's dtype and channels.

    Parameters
    ----------
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, 3)``.
    dtype : numpy dtype
        Pixel type of the slices.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.image = np.zeros(shape, dtype=dtype)

    def update(self, image: np.ndarray, won: np.ndarray) -> None:
        """Copy `image`'s pixels where `won` is True.

        Parameters
        ----------
        image : (M, N) or (M, N, 3) ndarray
            The slice.
        won : (M, N) ndarray of bool
            Pixels where it is the sharpest so far.
        """
        where = won[..., None] if image.ndim == 3 else won
        np.copyto(self.image, image, where=where)


def composite_from_index(stack: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Take each pixel from the slice named by a depth (index) map.

    Parameters
    ----------
    stack : (Z, M, N) or (Z, M, N, 3) ndarray
        The slices.
    index : (M, N) ndarray of int
        Slice index per pixel, ``0 <= index < Z``.

    Returns
    -------
    composite : (M, N) or (M, N, 3) ndarray
        Same dtype as `stack`.

    Examples
    --------
    >>> stack = np.array([[[10, 20]], [[30, 40]]], dtype=np.uint8)
    >>> composite_from_index(stack, np.array([[1, 0]]))
    array([[30, 20]], dtype=uint8)
    """
    stack = np.asarray(stack)
    index = np.asarray(index)
    if stack.ndim not in (3, 4) or stack.shape[1:3] != index.shape:
        raise ValueError(
            f"stack (Z, M, N[, C]) and index (M, N) disagree: {stack.shape} vs {index.shape}"
        )
    if index.size and (index.min() < 0 or index.max() >= stack.shape[0]):
        raise ValueError(f"index values must lie in [0, {stack.shape[0] - 1}]")
    idx = index.astype(np.intp)[None, ...]
    if stack.ndim == 4:
        idx = idx[..., None]
    return np.take_along_axis(stack, idx, axis=0)[0]
