"""Whole-frame depth: spill rejected, unreliable pixels filled from reliable ones, smoothed.

The streaming passes give each pixel a depth from its own focus curve; this
module makes one consistent depth map of them once the whole frame is known.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from ._opencv import gaussian, local_max
from .pyramid import downsample, upsample

__all__ = ["NOT_SPILL", "regularize_depth", "resolve_depth", "stands_out"]


def regularize_depth(
    depth: np.ndarray, confidence: np.ndarray, *, sigma: float = 2.0, levels: int = 12
) -> np.ndarray:
    """Make a depth map consistent: reject outliers, fill unreliable pixels, smooth.

    Three steps, each edge-preserving:

    1. *Outliers*: a pixel more than one slice away from the median of its
       neighbourhood (a robust reference that keeps depth steps) loses its
       confidence. Pixels of no confidence take their confident
       surroundings' depth first (the fill below), so that the median
       follows the confident pixels even where they are few (between the
       stripes of a barcode, say).
    2. *Fill*: pull-push interpolation [2]_ of the confidence-weighted depth
       over a Gaussian pyramid: a pixel keeps its own depth in proportion to
       its confidence and takes the finest scale with enough confident
       support otherwise, so flat, textureless areas inherit depth from the
       textured pixels around them.
    3. *Smooth*: a Gaussian of `sigma` averages the small errors of the
       sub-slice fit, except where it would move a pixel by half a slice or
       more: depth steps stay within half a slice of where they were.

    Parameters
    ----------
    depth : (M, N) ndarray
        Depth in slices.
    confidence : (M, N) ndarray
        Reliability of each depth value in [0, 1].
    sigma : float, optional
        Smoothing scale in pixels.
    levels : int, optional
        Most pyramid levels for the fill (each halves the resolution).

    Returns
    -------
    depth : (M, N) ndarray of float32
        Regularised depth.

    References
    ----------
    .. [1] H. Knutsson and C.-F. Westin, "Normalized and differential
           convolution", CVPR 1993. :doi:`10.1109/CVPR.1993.341081`
    .. [2] S. J. Gortler, R. Grzeszczuk, R. Szeliski, M. F. Cohen, "The
           Lumigraph", SIGGRAPH 1996. :doi:`10.1145/237170.237200`

    Examples
    --------
    >>> d = np.zeros((20, 20), np.float32); d[10, 10] = 9  # one outlier
    >>> float(regularize_depth(d, np.ones_like(d))[10, 10])
    0.0
    """
    depth = np.asarray(depth, np.float32)
    confidence = np.asarray(confidence, np.float32)
    if depth.shape != confidence.shape or depth.ndim != 2:
        raise ValueError(
            f"depth and confidence must be equal 2-D shapes: {depth.shape}, {confidence.shape}"
        )
    unconfident = confidence <= 0
    if unconfident.any():
        given = lambda a, b: np.clip(confidence[a:b], 0, 1)  # noqa: E731
        depth = np.where(unconfident, _pull_push(depth, given, levels)(0, depth.shape[0]), depth)
    reference = _median_reference(depth)

    def confident(a: int, b: int) -> np.ndarray:
        """Confidence of rows a:b, zero where depth is an outlier."""
        c = np.clip(confidence[a:b], 0, 1)
        c[np.abs(depth[a:b] - reference(a, b)) > 1] = 0
        return c

    coarse = _pull_push(depth, confident, levels)
    # Full-resolution steps run a strip of rows at a time, each with the rows its
    # filters reach, so they hold a few strips rather than a few frames.
    rows, radius = depth.shape[0], int(4.0 * sigma + 0.5)
    out = np.empty_like(depth)
    for r0 in range(0, rows, _STRIP):
        r1 = min(rows, r0 + _STRIP)
        a, b = max(0, r0 - radius), min(rows, r1 + radius)
        # A pixel keeps its own depth in proportion to its confidence.
        filled = coarse(a, b)
        step = np.subtract(depth[a:b], filled)
        step *= confident(a, b)
        filled += step
        smooth = gaussian(filled, sigma, mode="nearest")
        f, sm = filled[r0 - a : r1 - a], smooth[r0 - a : r1 - a]
        # Where smoothing would move depth by half a slice or more, a depth step
        # is near: keep it sharp.
        out[r0:r1] = np.where(np.abs(sm - f) < 0.5, sm, f)
    return out


def resolve_depth(
    fine: np.ndarray,
    coarse: np.ndarray,
    confidence: np.ndarray,
    *,
    fine_peak: np.ndarray,
    coarse_peak: np.ndarray,
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One depth map from focus at two scales: spill rejected, gaps filled.

    Beside a strong edge, the slices that see the edge out of focus spread
    it over its neighbourhood: focus that a smooth surface nearby does not
    have of its own, peaking at the blurred slice. Summed over a wider
    window (`coarse`), the edge's in-focus response outweighs that spill.
    So a pixel keeps its `fine` depth where the two scales agree within a
    slice, or where its own fine peak stands out (at least 0.15 of the
    greatest within ``2 * sigma``: texture of its own); elsewhere it takes
    the `coarse` depth. Then a pixel whose coarse peak is far below the
    greatest within ``4 * sigma`` (under 1/4 of it: spill, or a flat area
    beside texture) loses its confidence, and :func:`regularize_depth`
    fills it from the pixels around it that kept theirs.

    Parameters
    ----------
    fine, coarse : (M, N) ndarray
        Sub-slice depth in slices from the focus measure and from the
        measure summed over a wider window.
    confidence : (M, N) ndarray
        Reliability of each depth value in [0, 1].
    fine_peak, coarse_peak : (M, N) ndarray
        The peak focus values the two depths come from.
    sigma : float, optional
        Focus window in pixels: sets the reach of the comparisons and the
        smoothing scale of :func:`regularize_depth`.

    Returns
    -------
    depth : (M, N) ndarray of float32
        Regularised depth.
    confidence : (M, N) ndarray of float32
        `confidence`, zero where the focus did not stand out.

    Examples
    --------
    Spill beside an edge: the fine scale sees depth 5 there, the coarse
    scale the edge's depth 0.

    >>> fine = np.zeros((9, 40), np.float32); fine[:, 21:26] = 5
    >>> peak = np.full_like(fine, 0.5); peak[:, 19:21] = 4; peak[:, 21:26] = 0.05
    >>> d, c = resolve_depth(fine, np.zeros_like(fine), np.ones_like(fine),
    ...                      fine_peak=peak, coarse_peak=peak)
    >>> round(float(d[4, 23]), 3), float(c[4, 23]), float(c[4, 35])
    (0.0, 0.0, 1.0)
    """
    shape = np.shape(fine)
    for name, a in (("coarse", coarse), ("fine_peak", fine_peak), ("coarse_peak", coarse_peak)):
        if np.shape(a) != shape:
            raise ValueError(f"{name} must have the fine depth's shape {shape}, got {np.shape(a)}")
    # Each frame is let go as soon as it has served: on large images these
    # steps, not the stream, set the peak memory.
    credible = stands_out(coarse_peak, 4 * sigma, NOT_SPILL)
    del coarse_peak
    own = stands_out(fine_peak, 2 * sigma, _OWN_TEXTURE)
    own |= np.abs(fine - coarse) <= 1
    depth = np.where(own, fine, coarse).astype(np.float32, copy=False)
    del own, fine, coarse
    confidence = np.where(credible, np.asarray(confidence, np.float32), np.float32(0))
    return regularize_depth(depth, credible.astype(np.float32), sigma=sigma), confidence


def stands_out(peak: np.ndarray, reach: float, share: float) -> np.ndarray:
    """Where a pixel's peak focus is at least `share` of the greatest within `reach` pixels.

    Parameters
    ----------
    peak : (M, N) ndarray
        Peak focus value of each pixel.
    reach : float
        Radius of the neighbourhood in pixels.
    share : float
        The least share of the neighbourhood's greatest peak.

    Returns
    -------
    mask : (M, N) ndarray of bool

    Examples
    --------
    >>> stands_out(np.array([[0.1, 1.0, 0.5, 0.1, 0.1]]), 1, 0.25)
    array([[False,  True,  True, False,  True]])
    """
    peak = np.asarray(peak, np.float32)
    return peak >= np.float32(share) * local_max(peak, int(round(reach)))


# Shares of the greatest peak nearby (see resolve_depth).
_OWN_TEXTURE = 0.15
NOT_SPILL = 0.25

_STRIP = 256  # rows per strip of the full-resolution steps


def _median_reference(depth: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """Median of a neighbourhood about 1/40 of the image wide, computed on a subsample.

    Returns a function giving the reference for rows ``a:b``.
    """
    step = max(2, min(depth.shape) // 200)
    small = ndimage.median_filter(depth[::step, ::step], 5, mode="nearest")
    rows = np.minimum(np.arange(depth.shape[0]) // step, small.shape[0] - 1)
    cols = np.minimum(np.arange(depth.shape[1]) // step, small.shape[1] - 1)
    return lambda a, b: small[rows[a:b]][:, cols]


def _pull_push(
    depth: np.ndarray, confident: Callable[[int, int], np.ndarray], levels: int
) -> Callable[[int, int], np.ndarray]:
    """Pull-push interpolation: confident depth spreads into unconfident pixels.

    Pull: confidence-weighted depth and confidence are reduced down a
    Gaussian pyramid. Push: from the coarsest level up, each level keeps its
    own weighted mean where it has confident support and takes the coarser
    estimate elsewhere. O(pixels), whatever the size of the holes. The first
    reduction reads full-resolution rows a strip at a time.

    Returns a function giving the coarse estimate, at full resolution, for
    rows ``a:b``.
    """
    rows, cols = depth.shape
    if levels < 1 or min(rows, cols) < 4:
        c = confident(0, rows)
        mean = np.float32((depth * c).sum() / max(c.sum(), 1e-12))
        return lambda a, b: np.full((b - a, cols), mean, np.float32)
    half = (rows + 1) // 2
    weights, values = [np.empty((half, (cols + 1) // 2), np.float32)], [None]
    values[0] = np.empty_like(weights[0])
    for i0 in range(0, half, _STRIP // 2):
        i1 = min(half, i0 + _STRIP // 2)
        # Level row i is the blur (5 taps) of full row 2 i.
        a, b = max(0, 2 * i0 - 2), min(rows, 2 * i1 + 1)
        c = confident(a, b)
        keep = slice((2 * i0 - a) // 2, (2 * i0 - a) // 2 + i1 - i0)
        weights[0][i0:i1] = downsample(c)[keep]
        values[0][i0:i1] = downsample(c * depth[a:b])[keep]
    for _ in range(levels - 1):
        if min(weights[-1].shape) < 4:
            break
        weights.append(downsample(weights[-1]))
        values.append(downsample(values[-1]))
    estimate = values[-1].sum() / max(weights[-1].sum(), 1e-12) + np.zeros_like(values[-1])
    for w, v in zip(weights[::-1], values[::-1], strict=True):
        coarse = upsample(estimate, w.shape) if estimate.shape != w.shape else estimate
        # Support saturates at 20 % confident neighbours.
        alpha = np.clip(w / 0.2, 0, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            own = np.where(w > 1e-6, v / w, coarse)
        estimate = alpha * own + (1 - alpha) * coarse

    def full(a: int, b: int) -> np.ndarray:
        # Upsampling reaches two rows; starting on an even row keeps the
        # level's rows on the even rows, as in the whole frame.
        s = max(0, a - 2)
        s -= s % 2
        e = min(rows, b + 2)
        return upsample(estimate[s // 2 : (e + 1) // 2], (e - s, cols))[a - s : b - s]

    return full
