"""Per-slice focus measures: how sharp each pixel of one slice is.

Measures are *not* normalised per slice: a pixel's value is compared across
the slices of a stack, so every slice must be measured on the same scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._opencv import fill_edge, filter_wide, gaussian_kernel, separable, widened

__all__ = [
    "FOCUS_MEASURES",
    "focus_radius",
    "check_measure",
    "focus_measure",
    "local_variance",
    "mean_local_std",
    "noise_variance",
    "to_gray",
]

# Rec. 601 luma weights: sharpness is judged on brightness, once for all channels.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BAND = 128  # rows per band in to_gray


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return the luma of an image as float32, integers scaled to [0, 1].

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        Grey or RGB pixels of any numeric dtype. Unsigned integers are divided
        by their type's maximum; floats are kept as they are.

    Returns
    -------
    gray : (M, N) ndarray of float32
        Rec. 601 luma for RGB, the image itself for grey.

    Examples
    --------
    >>> to_gray(np.full((2, 2, 3), 255, np.uint8))[0, 0]
    np.float32(1.0)
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        # A band of rows at a time: a float copy of the whole RGB image would
        # triple the memory this step needs, and a band's channels, strided,
        # stay in cache (twice as fast as whole-frame channel products).
        gray = np.empty(image.shape[:2], np.float32)
        for r in range(0, image.shape[0], _BAND):
            band = image[r : r + _BAND].astype(np.float32)
            out = gray[r : r + _BAND]
            np.multiply(band[..., 0], _LUMA[0], out=out)
            out += band[..., 1] * _LUMA[1]
            out += band[..., 2] * _LUMA[2]
    elif image.ndim == 2:
        gray = image.astype(np.float32)
    else:
        raise ValueError(f"image must have shape (M, N) or (M, N, 3), got {image.shape}")
    if image.dtype.kind == "u":
        gray *= np.float32(1.0 / np.iinfo(image.dtype).max)
    return gray.astype(np.float32, copy=False)


def local_variance(
    gray: np.ndarray, *, sigma: float = 2.0, overwrite: bool = False, offset: float | None = None
) -> np.ndarray:
    """Gaussian-weighted local variance, ``E[x^2] - E[x]^2``.

    Parameters
    ----------
    gray : (M, N) ndarray
        Grey image.
    sigma : float, optional
        Standard deviation of the Gaussian window, in pixels.
    overwrite : bool, optional
        Allow the result to be computed in `gray`'s memory when it is a
        writable float32 array (saves a frame of memory on large images).
    offset : float, optional
        Value subtracted from `gray` before squaring (default: its mean). Give
        every tile of one image the same value, and tiles match the whole.

    Returns
    -------
    variance : (M, N) ndarray of float32
        Local variance, never negative.

    References
    ----------
    .. [1] S. Pertuz, D. Puig, M. A. Garcia, "Analysis of focus measure
           operators for shape-from-focus", Pattern Recognition 46(5),
           1415-1432 (2013). :doi:`10.1016/j.patcog.2012.11.011`

    Examples
    --------
    >>> float(local_variance(np.zeros((4, 4))).max())
    0.0
    """
    radius = _radius(sigma)
    offset = gray.mean(dtype=np.float64) if offset is None else offset
    return _in_bands(
        gray, radius, overwrite, lambda rows: _wide_variance(rows, sigma, offset, radius)
    )


def _in_bands(
    gray: np.ndarray, reach: int, overwrite: bool, measure: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply a focus measure to bands of rows, each read with the `reach` rows around it.

    A band's temporaries are a few megabytes, where the whole frame's are
    three frames besides `gray`: with them, two workers' measures raised the
    12 MP default merge's peak memory from 918 to 1010 MiB.
    Every row is computed as in the whole frame (OpenCV's filters do not
    depend on where a row lies), so bands leave the result unchanged.

    Parameters
    ----------
    gray : (M, N) ndarray
        Grey image.
    reach : int
        Rows on each side that one output row depends on.
    overwrite : bool
        Write the result into `gray` when it is a writable float32 array.
    measure : callable
        ``measure(rows)`` gives a widened (see ``_opencv.widened``) result for
        `rows`, a band of `gray` with its reach.

    Returns
    -------
    focus : (M, N) ndarray of float32
    """
    reuse = overwrite and gray.dtype == np.float32 and gray.flags.writeable
    out = gray if reuse else np.empty(gray.shape, np.float32)
    rows, width = gray.shape
    band = max(_MEASURE_ROWS, reach)
    above = gray[:0]
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        a, b = max(0, r0 - reach), min(rows, r1 + reach)
        # Writing into `gray`, the rows above the band already hold results:
        # their original values were kept aside.
        source = np.concatenate([above, gray[r0:b]]) if reuse and a < r0 else gray[a:b]
        part = measure(source)
        if reuse:
            above = gray[max(0, r1 - reach) : r1].copy()  # band >= reach: not yet overwritten
        out[r0:r1] = part[r0 - a : r1 - a, :width]
    return out


def _wide_variance(gray: np.ndarray, sigma: float, offset: float, radius: int) -> np.ndarray:
    """Local variance in a widened array (see ``_opencv.widened``); edge columns not filled."""
    # Variance ignores a constant offset; removing the mean first keeps
    # E[x^2] - E[x]^2 from cancelling catastrophically in float32 on images
    # with a large offset and little contrast (common in fluorescence).
    width = gray.shape[1]
    x = widened(gray.shape, radius)
    np.subtract(gray, offset, out=x[:, :width], dtype=np.float32)
    kernel = gaussian_kernel(sigma, _TRUNCATE)
    mean = filter_wide(fill_edge(x, width), kernel)
    np.multiply(x, x, out=x)  # squares of mirrored columns stay mirrored
    variance = filter_wide(x, kernel)
    del x
    # Float32 filtering leaves residues of either sign, up to about 2**-20.5 of
    # E[x]^2 (measured over sigmas 0.5-5), where the true variance is zero;
    # subtracting 2**-19 of it clears them, so flat areas measure exactly 0,
    # at a bias of the order of that rounding error elsewhere.
    mean *= np.float32(_FLAT**0.5)
    variance -= np.multiply(mean, mean, out=mean)
    np.maximum(variance, 0, out=variance)
    return variance


def mean_local_std(
    gray: np.ndarray, *, sigma: float = 2.0, overwrite: bool = False, offset: float | None = None
) -> np.ndarray:
    """Squared Gaussian-weighted mean of the fine-scale local standard deviation.

    The local variance in a window of ``sigma / 2`` is square-rooted, averaged
    over a window of ``0.75 * sigma`` and squared back to the units of
    variance. The two windows in series see about as far as the reference
    measure's (``sqrt(0.5**2 + 0.75**2) = 0.9`` of `sigma`).

    Averaging standard deviations instead of variances (a power mean of order
    1/2) lets a window's typical texture count, where the variance is ruled by
    its strongest edge. Beside an occlusion edge, the sharp contour of the near
    object in a slice focused on it no longer outvotes the far background's own
    texture, so the background keeps its sharp slice and the composite's halo
    narrows.

    Parameters
    ----------
    gray : (M, N) ndarray
        Grey image.
    sigma : float, optional
        Focus window in pixels, as for :func:`local_variance`.
    overwrite : bool, optional
        Allow the result to be computed in `gray`'s memory when it is a
        writable float32 array.
    offset : float, optional
        Value subtracted from `gray` first (see :func:`local_variance`).

    Returns
    -------
    focus : (M, N) ndarray of float32
        Never negative; where the fine-scale variance is the same throughout
        the window (a ramp, say) it is that variance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> edge = np.zeros((40, 40)); edge[:, 20:] = 1
    >>> texture = 0.5 + 0.3 * rng.standard_normal((40, 40))
    >>> # The edge has the larger variance but the smaller mean deviation.
    >>> bool(local_variance(edge)[20, 17] > local_variance(texture)[20, 17])
    True
    >>> bool(mean_local_std(edge)[20, 17] < mean_local_std(texture)[20, 17])
    True
    """
    fine, outer = sigma * _FINE, sigma * _OUTER
    radius = max(_radius(fine), _radius(outer))
    offset = gray.mean(dtype=np.float64) if offset is None else offset

    def measure(rows: np.ndarray) -> np.ndarray:
        std = _wide_variance(rows, fine, offset, radius)
        np.sqrt(std, out=std)
        mean = filter_wide(fill_edge(std, rows.shape[1]), gaussian_kernel(outer, _TRUNCATE))
        return np.multiply(mean, mean, out=mean)

    return _in_bands(gray, focus_radius(sigma, "mean-std"), overwrite, measure)


FOCUS_MEASURES: dict[str, Callable[..., np.ndarray]] = {
    "variance": local_variance,
    "mean-std": mean_local_std,
}
# Rows per band of a focus measure (see _in_bands).
_MEASURE_ROWS = 128
# See local_variance.
_FLAT = 1.0 + 2.0**-19
# Three sigmas hold 99.7 % of the window; the fourth would cost 30 % more time.
_TRUNCATE = 3.0
# mean_local_std's windows, in units of sigma.
_FINE = 0.5
_OUTER = 0.75


def focus_radius(sigma: float, measure: str = "variance") -> int:
    """How far a focus measure reaches: the value at a pixel depends on pixels this close.

    Parameters
    ----------
    sigma : float
        Focus window (Gaussian standard deviation) in pixels.
    measure : str, optional
        A key of :data:`FOCUS_MEASURES`.

    Returns
    -------
    radius : int
        In pixels; tiles overlapping by this much give the same focus as the
        whole image.

    Examples
    --------
    >>> focus_radius(2.0), focus_radius(2.0, "mean-std")
    (6, 8)
    """
    check_measure(measure, sigma)
    if measure == "mean-std":
        return _radius(_FINE * sigma) + _radius(_OUTER * sigma)
    return _radius(sigma)


def _radius(sigma: float) -> int:
    # scipy's kernel radius for a Gaussian truncated at _TRUNCATE sigmas
    return int(_TRUNCATE * float(sigma) + 0.5)


def noise_variance(gray: np.ndarray) -> float:
    """Estimate the variance of white sensor noise in a grey image.

    Immerkaer's method: the image is filtered with a kernel that cancels
    planes and most smooth structure (the difference of two Laplacians), and
    the mean absolute response is scaled to a Gaussian standard deviation.
    Texture biases the estimate upwards, so on a focal stack the smallest
    estimate over the slices (the most defocused one) is the best.

    Parameters
    ----------
    gray : (M, N) ndarray
        Grey image, at least 3 x 3.

    Returns
    -------
    variance : float
        Noise variance in the image's units squared.

    References
    ----------
    .. [1] J. Immerkaer, "Fast noise variance estimation", Computer Vision
           and Image Understanding 64(2), 300-302 (1996).
           :doi:`10.1006/cviu.1996.0060`

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(noise_variance(0.5 + 0.1 * rng.standard_normal((256, 256))) ** 0.5, 2)
    0.1
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or min(gray.shape) < 3:
        raise ValueError(f"gray must be a 2-D image of at least 3 x 3, got shape {gray.shape}")
    # The kernel is the outer product of [1, -2, 1] with itself.
    response = separable(gray, _SECOND_DIFFERENCE)[1:-1, 1:-1]
    sigma = np.sqrt(np.pi / 2) / 6 * np.abs(response).mean(dtype=np.float64)
    return float(sigma**2)


_SECOND_DIFFERENCE = np.array([1, -2, 1], dtype=np.float32)


def check_measure(measure: str, sigma: float) -> Callable[..., np.ndarray]:
    """Validate a focus measure name and window; return the measure's function.

    Parameters
    ----------
    measure : str
        A key of :data:`FOCUS_MEASURES`.
    sigma : float
        Window size in pixels, > 0.

    Returns
    -------
    func : callable
        ``func(gray, sigma=sigma, overwrite=False)`` computes the measure on a
        grey image (with ``overwrite=True`` it may reuse `gray`'s memory).
    """
    if not np.isscalar(sigma) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    try:
        return FOCUS_MEASURES[measure]
    except KeyError:
        raise ValueError(
            f"unknown focus measure {measure!r}; expected one of {', '.join(FOCUS_MEASURES)}"
        ) from None


def focus_measure(
    image: np.ndarray, *, sigma: float = 2.0, measure: str = "variance"
) -> np.ndarray:
    """Measure how sharp each pixel of one slice is.

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        One slice, grey or RGB, any numeric dtype.
    sigma : float, optional
        Window size (Gaussian standard deviation) in pixels.
    measure : str, optional
        Name of the measure, a key of :data:`FOCUS_MEASURES`.

    Returns
    -------
    focus : (M, N) ndarray of float32
        Non-negative focus values, comparable between slices of one stack.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((32, 32))
    >>> from scipy.ndimage import gaussian_filter
    >>> bool(focus_measure(sharp).mean() > focus_measure(gaussian_filter(sharp, 2)).mean())
    True
    """
    return check_measure(measure, sigma)(to_gray(image), sigma=float(sigma))
