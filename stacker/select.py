"""Per-pixel selection of the sharpest slice, computed while streaming."""

from __future__ import annotations

import numpy as np

from ._opencv import copy_where

__all__ = [
    "ArgmaxSelector",
    "PeakTracker",
    "peak_confidence",
    "select_sharpest",
    "subslice_peak",
]


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
        copy_where(self.value, focus, won)
        np.copyto(self.index, self.count, where=won)
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


class PeakTracker(ArgmaxSelector):
    """Running argmax that also keeps the focus curve around each pixel's peak.

    Besides the peak value and index, it keeps the focus of the slices just
    before and after the peak, and the running mean of focus, which is what
    a sub-slice fit and a confidence measure need: three numbers per pixel,
    whatever the number of slices.

    Parameters
    ----------
    shape : tuple of int
        ``(M, N)``, the shape of one focus map.
    total : bool, optional
        Keep the running sum (a frame of memory; only confidence needs it).

    Attributes
    ----------
    before, after : (M, N) ndarray of float32
        Focus of slices ``index - 1`` and ``index + 1`` (NaN where that slice
        does not exist, or is not seen yet).
    total : (M, N) ndarray of float32 or None
        Sum of focus over the slices seen (None without `total`).
    """

    def __init__(self, shape: tuple[int, int], *, total: bool = True):
        super().__init__(shape)
        self.before = np.full(shape, np.nan, dtype=np.float32)
        self.after = np.full(shape, np.nan, dtype=np.float32)
        self.total = np.zeros(shape, dtype=np.float32) if total else None
        self._previous = np.full(shape, np.nan, dtype=np.float32)

    def update(self, focus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Take the next slice's focus map.

        Parameters
        ----------
        focus : (M, N) ndarray
            Focus values of slice number :attr:`count`.

        Returns
        -------
        won : (M, N) ndarray of bool
            Pixels where this slice is now the sharpest.
        follows : (M, N) ndarray of bool
            Pixels whose sharpest slice is the one just before this one.
        """
        follows = self.index == self.count - 1
        if self.count == 0:
            follows[...] = False
        won = super().update(focus)
        np.greater(follows, won, out=follows)  # and not won
        copy_where(self.after, focus, follows)
        copy_where(self.before, self._previous, won)
        np.copyto(self.after, np.nan, where=won)
        if self.total is not None:
            self.total += focus
        self._previous[...] = focus
        return won, follows

    def release(self) -> None:
        """After the last update: free what only updates need (the results stay valid)."""
        self._previous = None


def subslice_peak(
    before: np.ndarray, peak: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-slice position and width of a focus peak from three samples.

    Fits a Gaussian through the focus at the peak slice and its two
    neighbours (a parabola through their logarithms), as in shape-from-focus
    practice [1]_.

    Parameters
    ----------
    before, peak, after : (M, N) ndarray
        Focus at slices ``k - 1``, ``k`` and ``k + 1``, where ``k`` is the
        argmax. NaN marks a missing neighbour (first or last slice): the
        position then stays at ``k``.

    Returns
    -------
    offset : (M, N) ndarray of float32
        Peak position relative to ``k``, in [-0.5, 0.5] slices.
    width : (M, N) ndarray of float32
        Standard deviation of the fitted Gaussian in slices (``inf`` where the
        curve is flat or a neighbour is missing).

    References
    ----------
    .. [1] S. K. Nayar and Y. Nakagawa, "Shape from focus", IEEE Trans. PAMI
           16(8), 824-831 (1994). :doi:`10.1109/34.308479`

    Examples
    --------
    >>> k = np.arange(3.0)
    >>> f = np.exp(-((k - 1.3) ** 2) / 2)[:, None, None]
    >>> offset, width = subslice_peak(f[0], f[1], f[2])
    >>> round(float(offset[0, 0]), 3), round(float(width[0, 0]), 3)
    (0.3, 1.0)
    """
    tiny = np.float32(1e-12)
    # In place where it can be: on large frames each temporary is a frame of memory.
    lb, lp, la = (
        np.log(np.maximum(np.asarray(a, np.float32), tiny)) for a in (before, peak, after)
    )
    curvature = np.add(lb, la)  # second difference; negative at a proper peak
    curvature -= lp
    curvature -= lp
    del lp
    offset = np.subtract(lb, la, out=lb)
    del la
    with np.errstate(divide="ignore", invalid="ignore"):
        offset /= curvature
        offset *= 0.5
        width = np.divide(-1, curvature, out=curvature)
        np.sqrt(width, out=width)
    ok = np.isfinite(offset) & (width > 0) & np.isfinite(width)
    offset[~ok] = 0
    np.clip(offset, -0.5, 0.5, out=offset)
    width[~ok] = np.inf
    return offset, width


def peak_confidence(peak: np.ndarray, total: np.ndarray, n: int, noise: float) -> np.ndarray:
    """Depth reliability in [0, 1]: how clearly each pixel's focus curve peaks.

    Two conditions, multiplied: the peak's excess over the mean of the other
    slices must stand out of the sensor noise (0 at noise level, 1 a few noise
    units above), and must be a good share of the peak itself (0 below 30 %,
    1 above 70 %), since compressed images hide their noise from the noise
    estimate while their flat areas still have flat focus curves.

    Parameters
    ----------
    peak, total : (M, N) ndarray
        Each pixel's peak focus and its focus summed over the slices.
    n : int
        Number of slices summed.
    noise : float
        Noise variance of the slices, in focus units.

    Returns
    -------
    confidence : (M, N) ndarray of float32
        With one slice, 1 where the peak is above 0 (texture) and 0 elsewhere.

    Examples
    --------
    >>> peak, others = np.array([[1.0, 1.0]]), np.array([[0.0, 1.0]])
    >>> peak_confidence(peak, peak + 4 * others, 5, 0.01)
    array([[1., 0.]], dtype=float32)
    """
    if n < 2:
        return (np.asarray(peak) > 0).astype(np.float32)
    others = (total - peak) / (n - 1)
    excess = peak - others
    snr = np.clip((excess / np.float32(max(noise, 1e-12)) - 1) / 4, 0, 1)
    share = np.clip((excess / np.maximum(peak, 1e-12) - 0.3) / 0.4, 0, 1)
    return (snr * share).astype(np.float32)
