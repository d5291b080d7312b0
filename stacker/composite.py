"""Build the all-in-focus composite from the per-pixel selection."""

from __future__ import annotations

import numpy as np

from ._dtype import round_into
from ._opencv import copy_where

__all__ = ["DepthBlend", "HardPick", "composite_from_index", "copy_pixels"]


def copy_pixels(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> None:
    """Copy whole pixels (all channels) of `src` into `dst` where `mask` is True.

    Parameters
    ----------
    dst : (M, N) or (M, N, C) ndarray
        Destination, C-contiguous; changed in place.
    src : ndarray
        Same shape and dtype as `dst`.
    mask : (M, N) ndarray of bool
        Pixels to copy.

    Examples
    --------
    >>> dst = np.zeros((1, 2, 3), np.uint8)
    >>> copy_pixels(dst, np.full((1, 2, 3), 7, np.uint8), np.array([[False, True]]))
    >>> dst[0, :, 0]
    array([0, 7], dtype=uint8)
    """
    copy_where(dst, src, mask)


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
        copy_pixels(self.image, image, won)


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


class DepthBlend:
    """Composite sampled from a stack at a given sub-slice depth, one slice at a time.

    Each pixel is the linear interpolation of the two slices on either side
    of its depth (``depth = 2.25`` takes 3/4 of slice 2 and 1/4 of slice 3),
    so only slices within one slice of a pixel's depth reach it, and a stack
    is read once more only over the range of depths a frame holds.

    Parameters
    ----------
    depth : (M, N) ndarray
        Depth in slice units, within ``[0, n - 1]``.
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, 3)``.
    fill : bool, optional
        Slices may miss pixels (give :meth:`add` where each has data): keep,
        for every pixel, the slice nearest its depth that has it, for the
        pixels the slices within one slice of their depth all miss. Read
        every slice then, not only :attr:`slices`.

    Examples
    --------
    >>> blend = DepthBlend(np.array([[0.0, 0.25, 1.0]]), (1, 3))
    >>> for k in blend.slices:
    ...     blend.add(k, np.full((1, 3), 100 * k, np.uint8))
    >>> blend.result(np.uint8)
    array([[  0,  25, 100]], dtype=uint8)
    """

    def __init__(self, depth: np.ndarray, shape: tuple[int, ...], *, fill: bool = False):
        self.depth = np.asarray(depth, np.float32)
        if self.depth.shape != tuple(shape[:2]):
            raise ValueError(f"depth shape {self.depth.shape} != slice shape {shape[:2]}")
        if self.depth.size and self.depth.min() < 0:
            raise ValueError("depth must not be negative")
        self.total = np.zeros(shape, np.float32)
        self.weight = np.zeros(shape[:2], np.float32)
        # Slice k reaches only the pixels whose depth lies in (k - 1, k + 1): those
        # whose floor is k or k - 1. Working on them alone, instead of on whole
        # frames of zero weights, makes a slice's cost its share of the frame.
        self._floor = np.floor(self.depth).astype(np.int32).ravel()
        self._group: tuple[int, np.ndarray] | None = None
        self._nearest = np.zeros(shape, np.float32) if fill else None
        self._distance = np.full(shape[:2], np.inf, np.float32) if fill else None

    @property
    def slices(self) -> range:
        """The slices some pixel takes, in order."""
        if not self.depth.size:
            return range(0)
        return range(int(np.floor(self.depth.min())), int(np.ceil(self.depth.max())) + 1)

    def add(self, k: int, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Take slice `k` (where `valid`, if given: the pixels it has data for)."""
        if self._nearest is not None:
            self._keep_nearest(k, image, valid)
        depth, weight = self.depth.ravel(), self.weight.ravel()
        total = self.total.reshape(weight.size, -1)
        pixels = image.reshape(weight.size, -1)
        for group in (self._pixels(k - 1), self._pixels(k)):
            w = np.subtract(depth[group], np.float32(k))
            np.abs(w, out=w)
            np.subtract(np.float32(1), w, out=w)
            if valid is not None:
                w *= valid.ravel()[group]
            weight[group] += w
            total[group] += w[:, None] * pixels[group]

    def _pixels(self, k: int) -> np.ndarray:
        """Flat indices of the pixels whose depth's floor is `k` (the last answer is kept)."""
        if self._group is None or self._group[0] != k:
            self._group = (k, np.flatnonzero(self._floor == k))
        return self._group[1]

    def _keep_nearest(self, k: int, image: np.ndarray, valid: np.ndarray | None) -> None:
        distance = np.abs(self.depth - np.float32(k))
        nearer = distance < self._distance
        if valid is not None:
            nearer &= valid
        copy_where(self._distance, distance, nearer)
        copy_where(self._nearest, image.astype(np.float32), nearer)

    def result(self, dtype: np.dtype) -> np.ndarray:
        """The composite in `dtype`."""
        weight = np.maximum(self.weight, np.float32(1e-12))
        self.total /= weight[..., None] if self.total.ndim == 3 else weight
        if self._nearest is not None:
            copy_where(self.total, self._nearest, self.weight == 0)
        return round_into(self.total, dtype).astype(dtype)
