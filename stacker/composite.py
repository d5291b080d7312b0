"""Build the all-in-focus composite from the per-pixel selection."""

from __future__ import annotations

import numpy as np

from ._opencv import copy_where, gaussian
from .io import round_into

__all__ = [
    "HardPick",
    "PeakNeighbours",
    "add_depth_weights",
    "composite_from_index",
    "copy_pixels",
    "neighbour_weights",
]


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


class PeakNeighbours:
    """Running copy of each pixel's sharpest slice and of its two neighbours.

    Paired with :class:`stacker.select.PeakTracker`, this keeps, per pixel,
    the slices at ``index - 1``, ``index`` and ``index + 1``: enough to blend
    around a sub-slice depth in one pass over the stack, with memory of four
    frames (three kept, one previous) whatever the number of slices.

    Parameters
    ----------
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, 3)``.
    dtype : numpy dtype
        Pixel type of the slices.

    Attributes
    ----------
    before, peak, after : ndarray
        The three slices' pixels (``before`` repeats ``peak`` at the first
        slice, ``after`` at the last).
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.before = np.zeros(shape, dtype=dtype)
        self.peak = np.zeros(shape, dtype=dtype)
        self.after = np.zeros(shape, dtype=dtype)
        self._previous: np.ndarray | None = None

    def update(self, image: np.ndarray, won: np.ndarray, follows: np.ndarray) -> None:
        """Take the next slice, with the masks from :meth:`PeakTracker.update`.

        Parameters
        ----------
        image : (M, N) or (M, N, 3) ndarray
            The slice.
        won : (M, N) ndarray of bool
            Pixels where it is now the sharpest slice.
        follows : (M, N) ndarray of bool
            Pixels whose sharpest slice is the previous one.
        """
        previous = image if self._previous is None else self._previous
        copy_pixels(self.after, image, follows | won)
        copy_pixels(self.peak, image, won)
        copy_pixels(self.before, previous, won)
        self._previous = image

    def release(self) -> None:
        """After the last update: drop the last slice, which only updates need."""
        self._previous = None

    def blend(self, weights: np.ndarray) -> np.ndarray:
        """Weighted sum of the three kept slices, in their dtype.

        Parameters
        ----------
        weights : (3, M, N) ndarray
            Weights of ``before``, ``peak`` and ``after``, summing to 1.

        Returns
        -------
        image : ndarray
            Same shape and dtype as the slices.
        """
        images = (self.before, self.peak, self.after)
        out = np.empty_like(self.peak)
        # One channel at a time keeps the float work to a single grey frame.
        for ch in range(self.peak.shape[2] if self.peak.ndim == 3 else 1):
            pick = (..., ch) if self.peak.ndim == 3 else ...
            total = np.zeros(self.peak.shape[:2], dtype=np.float32)
            for w, img in zip(weights, images, strict=True):
                total += w * img[pick]
            out[pick] = round_into(total, out.dtype)
        return out


def neighbour_weights(
    before: np.ndarray, peak: np.ndarray, after: np.ndarray, noise: float
) -> np.ndarray:
    """Weights of the slices before, at and after the focus peak.

    Blending a neighbour into the composite averages its noise away but
    adds its defocus; the defocus error grows with the focus it lost
    relative to the peak (``peak - before``), and the noise gain is fixed.
    The weights are thus inverse error variances: ``noise / (noise + loss)``
    for each neighbour and 1 for the peak. Where the neighbours are about as
    sharp as the peak (deep focus, flat or noisy areas) they are averaged;
    where the peak is clear, it dominates.

    Parameters
    ----------
    before, peak, after : (M, N) ndarray
        Focus at the slices before, at and after the peak (NaN where a
        neighbour does not exist).
    noise : float
        Noise variance of the slices in focus units (> 0).

    Returns
    -------
    weights : (3, M, N) ndarray of float32
        Non-negative, summing to 1 over the first axis.

    Examples
    --------
    >>> w = neighbour_weights(np.array([[1.0]]), np.array([[1.0]]), np.array([[np.nan]]), 0.1)
    >>> w[:, 0, 0]
    array([0.5, 0.5, 0. ], dtype=float32)
    """
    noise = np.float32(max(noise, 1e-12))
    weights = np.empty((3, *peak.shape), dtype=np.float32)
    weights[1] = 1
    for out, focus in ((weights[0], before), (weights[2], after)):
        loss = np.maximum(peak - focus, 0)
        np.divide(noise, noise + loss, out=out)
        out[np.isnan(focus)] = 0
    weights /= weights.sum(axis=0)
    return weights


def add_depth_weights(
    weights: np.ndarray,
    depth: np.ndarray,
    index: np.ndarray,
    confidence: np.ndarray,
    missing: tuple[np.ndarray, np.ndarray],
    *,
    sigma: float = 1.5,
) -> np.ndarray:
    """Add weights that sample the stack at the locally smoothed depth; normalise.

    The local depth is the confidence-weighted Gaussian mean of the sub-slice
    depth around each pixel, held within one slice of the pixel's argmax.
    The slices before, at and after the argmax get the linear-interpolation
    weights of that depth: a pixel whose own argmax is an outlier among
    confident neighbours leans to the slice they agree on, and a fractional
    depth blends its two nearest slices.

    Parameters
    ----------
    weights : (3, M, N) ndarray of float32
        Weights of the slices before, at and after the argmax (for example
        from :func:`neighbour_weights`); updated in place.
    depth : (M, N) ndarray
        Sub-slice depth in slices.
    index : (M, N) ndarray of int
        The argmax slice.
    confidence : (M, N) ndarray
        Reliability of `depth` in [0, 1].
    missing : tuple of two (M, N) ndarray of bool
        Where there is no slice before, and no slice after, the argmax.
    sigma : float, optional
        Smoothing scale in pixels.

    Returns
    -------
    weights : (3, M, N) ndarray of float32
        `weights`, summing to 1 over the first axis.

    Examples
    --------
    >>> w = np.zeros((3, 1, 5), np.float32); w[1] = 1
    >>> depth, index = np.full((1, 5), 2.5, np.float32), np.full((1, 5), 2)
    >>> none = np.zeros((1, 5), bool)
    >>> add_depth_weights(w, depth, index, np.ones((1, 5)), (none, none))[:, 0, 2].round(4)
    array([0.  , 0.75, 0.25], dtype=float32)
    """
    c = np.asarray(confidence, np.float32) + np.float32(1e-3)  # flat areas still average
    local = gaussian(np.multiply(depth, c, dtype=np.float32), sigma)
    local /= gaussian(c, sigma, out=c)
    del c
    local -= index
    np.clip(local, -1, 1, out=local)
    for k, side, absent in ((0, -1, missing[0]), (2, 1, missing[1])):
        toward = np.maximum(local * side, 0)
        toward[absent] = 0
        weights[k] += toward
    weights[1] += 1 - np.abs(local, out=local)
    weights /= weights.sum(axis=0)
    return weights
