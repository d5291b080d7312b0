"""Build the all-in-focus composite from the per-pixel selection."""

from __future__ import annotations

import numpy as np

from ._dtype import round_into
from ._opencv import copy_where
from .resolve import NOT_SPILL, stands_out

__all__ = ["DepthBlend", "HardPick", "blend_width", "composite_from_index", "copy_pixels"]


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


def blend_width(sharpness: np.ndarray, noise: float, *, sigma: float = 2.0) -> np.ndarray:
    """How far in slices each pixel's composite may average: wider where it is flat.

    A pixel with detail of its own takes the two slices around its depth
    (width 1). Where its peak focus is within a few units of the sensor's
    noise, every slice near its depth shows it about as sharp, and averaging
    more of them lowers the noise: the width grows to 3 slices as the peak
    falls to the noise (:data:`FLAT_NOISE` units of it and below). Not beside
    a strong edge (a peak under :data:`stacker.resolve.NOT_SPILL` of the
    greatest within ``4 * sigma``), whose defocused spill the farther slices
    carry there.

    Parameters
    ----------
    sharpness : (M, N) ndarray
        Peak focus of each pixel.
    noise : float
        Noise variance of the slices, in focus units.
    sigma : float, optional
        Focus window in pixels.

    Returns
    -------
    width : (M, N) ndarray of float32
        Half-width of each pixel's tent in slices, in [1, 3] (see :class:`DepthBlend`).

    Examples
    --------
    >>> blend_width(np.array([[0.2, 0.4, 0.8]]), 0.1, sigma=0.25)
    array([[2.5, 2. , 1. ]], dtype=float32)
    """
    peak = np.asarray(sharpness, np.float32)
    # In float32, as the division: a noise of float images in 1e-40s underflows to 0.
    flat = np.float32(FLAT_NOISE * noise)
    if flat <= 0:
        return np.ones_like(peak)
    # A peak far above a tiny noise overflows to inf: width 1, as it should be.
    with np.errstate(over="ignore"):
        width = np.divide(peak, flat)
    np.subtract(np.float32(1), width, out=width)
    np.clip(width, 0, 1, out=width)
    width *= np.float32(_WIDEST - 1)
    width += np.float32(1)
    width[~stands_out(peak, 4 * sigma, NOT_SPILL)] = 1
    return width


# A peak focus below this many noise units is flat enough to average over.
FLAT_NOISE = 8.0
_WIDEST = 3.0  # slices either side, at a peak focus of zero


class DepthBlend:
    """Composite sampled from a stack around a given sub-slice depth, one slice at a time.

    Each pixel is a weighted mean of the slices around its depth, with tent
    weights ``1 - |depth - k| / width``: at the default width of 1, the
    linear interpolation of the two slices on either side (``depth = 2.25``
    takes 3/4 of slice 2 and 1/4 of slice 3). A wider tent averages more
    slices, which lowers noise where a pixel has no detail to lose. Only
    slices within `width` of a pixel's depth reach it, so a stack is read
    once more only over the range of depths a frame holds, and each slice
    costs its share of the frame.

    Parameters
    ----------
    depth : (M, N) ndarray
        Depth in slice units, within ``[0, n - 1]``.
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, 3)``.
    n : int
        Number of slices in the stack.
    width : (M, N) ndarray, optional
        Half-width of each pixel's tent in slices, at least 1 (default 1).
    fill : bool, optional
        Slices may miss pixels (give :meth:`add` where each has data): keep,
        for every pixel, the slice nearest its depth that has it, for the
        pixels the slices within reach of their depth all miss. Read every
        slice then, not only :attr:`slices`.

    Examples
    --------
    >>> blend = DepthBlend(np.array([[0.0, 0.25, 1.0]]), (1, 3), 2)
    >>> for k in blend.slices:
    ...     blend.add(k, np.full((1, 3), 100 * k, np.uint8))
    >>> blend.result(np.uint8)
    array([[  0,  25, 100]], dtype=uint8)
    """

    def __init__(
        self,
        depth: np.ndarray,
        shape: tuple[int, ...],
        n: int,
        *,
        width: np.ndarray | None = None,
        fill: bool = False,
    ):
        self.depth = np.asarray(depth, np.float32)
        if self.depth.shape != tuple(shape[:2]):
            raise ValueError(f"depth shape {self.depth.shape} != slice shape {shape[:2]}")
        self.width = np.ones_like(self.depth) if width is None else np.asarray(width, np.float32)
        if self.width.shape != self.depth.shape or (self.width.size and self.width.min() < 1):
            raise ValueError(f"width must be >= 1 and of the depth's shape {self.depth.shape}")
        self.n = n
        self.total = np.zeros(shape, np.float32)
        self.weight = np.zeros(shape[:2], np.float32)
        # The first slice that reaches each pixel; pixels enter the active set then
        # and leave it once past their reach.
        first = np.floor(self.depth - self.width) + 1
        self._first = np.clip(first, 0, n).astype(np.int32).ravel()
        self._active = np.empty(0, np.int32)
        self._next = 0
        self._nearest = np.zeros(shape, np.float32) if fill else None
        self._range = (np.inf, -np.inf)  # of the values blended
        self._distance = np.full(shape[:2], np.inf, np.float32) if fill else None

    @property
    def slices(self) -> range:
        """The slices some pixel takes, in order."""
        if not self.depth.size:
            return range(0)
        last = np.ceil(self.depth + self.width) - 1
        return range(int(self._first.min()), int(np.clip(last.max(), 0, self.n - 1)) + 1)

    def add(self, k: int, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Take slice `k` (where `valid`, if given: the pixels it has data for).

        Slices must come in increasing order; :attr:`slices` are all that count.
        """
        if self._nearest is not None:
            self._keep_nearest(k, image, valid)
        entering = (self._first >= self._next) & (self._first <= k)
        self._next = k + 1
        active = np.concatenate([self._active, np.flatnonzero(entering).astype(np.int32)])
        # In chunks: where many pixels are flat, most of the frame is active, and
        # whole-frame temporaries of gathered pixels would cost several frames.
        staying = [self._take(k, part, image, valid) for part in np.split(active, _chunks(active))]
        self._active = np.concatenate(staying) if staying else active

    def _take(self, k: int, part: np.ndarray, image: np.ndarray, valid: np.ndarray | None):
        """Add slice `k` to the active pixels `part`; those whose tent goes on past it."""
        depth, width = self.depth.ravel()[part], self.width.ravel()[part]
        w = np.subtract(depth, np.float32(k))
        np.abs(w, out=w)
        w /= width
        np.subtract(np.float32(1), w, out=w)
        reached = w > 0
        group, w = part[reached], w[reached]
        if valid is not None:
            w *= valid.ravel()[group]
        weight = self.weight.ravel()
        weight[group] += w
        total = self.total.reshape(weight.size, -1)
        used = image.reshape(weight.size, -1)[group]
        total[group] += w[:, None] * used
        if used.size:
            self._range = (min(self._range[0], used.min()), max(self._range[1], used.max()))
        # Pixels whose tent ends before the next slice leave the active set.
        return part[depth + width > k + 1]

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
        if np.dtype(dtype).kind == "f" and self._range[0] <= self._range[1]:
            # A float32 weighted mean can overshoot its inputs by an ulp (found
            # by the property tests: 3.0000002 from two slices of 3.0).
            np.clip(self.total, *self._range, out=self.total)
        if self._nearest is not None:
            copy_where(self.total, self._nearest, self.weight == 0)
        return round_into(self.total, dtype).astype(dtype)


def _chunks(indices: np.ndarray, size: int = 1 << 16) -> list[int]:
    """Where to split `indices` into pieces of at most `size`."""
    return list(range(size, len(indices), size))
