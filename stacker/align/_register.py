"""Pairwise registration: band-passed pyramids, a global search, ECC coarse to fine."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._opencv import gaussian
from ._ecc import _ecc
from ._geometry import _check_matrix, _scaled
from ._phase import _hann, _scale_rotation, _shift

MODELS = ("none", "translation", "similarity", "affine")
_COARSE = 256  # long side of the pyramid level where the global search runs
_HIGHPASS = 8.0  # sigma, in level pixels, of the low frequencies dropped before matching
_SIGNIFICANT = 0.5  # a motion must leave at most this share of the still mismatch


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")


def _check_gray(image, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 16 or image.dtype.kind not in "uif":
        raise ValueError(f"{name} must be a real (M, N) image of at least 16x16, got {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError(f"{name} must be finite")
    return image.astype(np.float32)


class _Pyramid:
    """Band-passed Gaussian pyramid, finest first; level l+1 pixel i is level l pixel 2i.

    The finest level, the costliest to band-pass, is made when first asked for:
    a pair found still one level up never needs it.
    """

    def __init__(self, gray: np.ndarray):
        image = np.asarray(gray, np.float32)
        smooth = gaussian(image, 1.0)
        self._finest = smooth
        self._levels: list[np.ndarray | None] = [None]
        while max(image.shape) > _COARSE and min(image.shape) >= 64:
            image = smooth[::2, ::2]
            smooth = gaussian(image, 1.0)
            self._levels.append(_band_pass(smooth))

    def __len__(self) -> int:
        return len(self._levels)

    def __getitem__(self, level: int) -> np.ndarray:
        if self._levels[level] is None:
            self._levels[level], self._finest = _band_pass(self._finest), None
        return self._levels[level]


def _band_pass(smooth: np.ndarray) -> np.ndarray:
    # The band-pass removes the haze that defocus spreads around bright objects, the
    # part of the signal that differs most between slices focused at different depths.
    return smooth - gaussian(smooth, _HIGHPASS, truncate=3.0)


def _similarity(scale: float, angle: float, shift, centre) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    lin = np.array([[c, -s], [s, c]])
    out = np.eye(3)
    out[:2, :2] = lin
    out[:2, 2] = np.asarray(centre) - lin @ centre + shift
    return out


def _register(ref_pyr, mov_pyr, model, initial=None):
    """Register two pyramids; return (matrix in finest-level pixels, quality)."""
    top = len(ref_pyr) - 1
    if model == "none":
        rho = _ecc(ref_pyr[0], mov_pyr[0], np.eye(3), "translation", 0, 0.0)[1]
        return np.eye(3), max(0.0, rho)
    coarse_model = "translation" if model == "translation" else "similarity"
    ref, mov = ref_pyr[top], mov_pyr[top]
    if initial is not None:
        matrix = _scaled(initial, 2.0**top)
    else:
        # Coarse search at low resolution, where the slices' different blur hardly matters:
        # phase correlation for the shift, then log-polar Fourier magnitudes for scale and
        # rotation; each candidate is polished by ECC and the best correlation wins.
        win = _hann(ref.shape)
        centre = (np.array(ref.shape) - 1) / 2
        candidates = [_similarity(1.0, 0.0, _shift(ref * win, mov * win), centre)]
        if model != "translation":
            scale, angle = _scale_rotation(ref, mov)
            if abs(scale - 1) > 0.005 or abs(angle) > 0.003:
                guess = _similarity(scale, angle, (0, 0), centre)
                turned = ndi.affine_transform(mov, guess[:2, :2], offset=guess[:2, 2], order=1)
                guess[:2, 2] += guess[:2, :2] @ _shift(ref * win, turned * win)
                candidates.append(guess)
        best = [_ecc(ref, mov, c, coarse_model, 30, 0.05) for c in candidates]
        matrix = max(best, key=lambda r: r[1])[0]
        if top > 0:
            # That polish was the coarsest level's refinement; go on from the next.
            top -= 1
            matrix = _scaled(matrix, 0.5)
    rho = 0.0
    for level in range(top, -1, -1):
        # An affine fit at the coarsest level has too few pixels to pin down six parameters.
        level_model = coarse_model if level == len(ref_pyr) - 1 > 0 else model
        iters, tol = (30, 0.05) if level else (10, 0.02)  # pixels of the finest level matter
        matrix, rho = _ecc(ref_pyr[level], mov_pyr[level], matrix, level_model, iters, tol)
        # A still pair shows it one level up already: the finest level, the
        # costliest, is left out.
        if level == 1 and (still := _still_unless_moved(ref_pyr[1], mov_pyr[1], rho)) is not None:
            return np.eye(3), still
        if level:
            matrix = _scaled(matrix, 0.5)
    if (still := _still_unless_moved(ref_pyr[0], mov_pyr[0], rho)) is not None:
        return np.eye(3), still
    return matrix, max(0.0, rho)


def _still_unless_moved(ref: np.ndarray, mov: np.ndarray, rho: float) -> float | None:
    """The match without motion, unless a motion matching to `rho` clearly beats it (None).

    Differently focused slices of a still subject also "move" a little: the
    sharp region wanders across the frame and the fit follows it. A motion
    must remove a good share of the mismatch to count.
    """
    still = max(0.0, _ecc(ref, mov, np.eye(3), "translation", 0, 0.0)[1])
    return None if 1 - rho <= _SIGNIFICANT * (1 - still) else still


def estimate_transform(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    model: str = "similarity",
    initial: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Estimate the transform that aligns `moving` onto `reference`.

    Parameters
    ----------
    reference, moving : (M, N) ndarray
        Grey images of equal shape, possibly focused at different depths.
    model : {'none', 'translation', 'similarity', 'affine'}, optional
        Shift; shift, rotation and uniform scale; or a full affine map.
    initial : (3, 3) ndarray, optional
        Starting estimate. Without one, a global search finds shifts up to half the frame and,
        for similarity and affine, scales of 0.6-1.6 and rotations up to 90 degrees.

    Returns
    -------
    matrix : (3, 3) ndarray of float64
        Maps reference (row, col, 1) to `moving` (row, col, 1).
    quality : float
        Correlation coefficient in [0, 1] of the band-passed images over their overlap after
        alignment; 0.1 or less means no match (unrelated or featureless images).

    References
    ----------
    .. [1] B. S. Reddy and B. N. Chatterji, "An FFT-based technique for translation, rotation,
           and scale-invariant image registration", IEEE TIP 5(8), 1996.
           :doi:`10.1109/83.506761`
    .. [2] G. D. Evangelidis and E. Z. Psarakis, "Parametric image alignment using enhanced
           correlation coefficient maximization", IEEE TPAMI 30(10), 2008.
           :doi:`10.1109/TPAMI.2008.113`

    Examples
    --------
    >>> from stacker.synthetic import texture
    >>> ref = texture((96, 128))
    >>> matrix, quality = estimate_transform(ref, np.roll(ref, (3, -2), axis=(0, 1)))
    >>> np.round(matrix[:2, 2], 1), quality > 0.9
    (array([ 3., -2.]), True)
    """
    _check_model(model)
    ref, mov = _check_gray(reference, "reference"), _check_gray(moving, "moving")
    if ref.shape != mov.shape:
        raise ValueError(f"moving must have the shape of reference {ref.shape}, got {mov.shape}")
    initial = None if initial is None else _check_matrix(initial, "initial")
    return _register(_Pyramid(ref), _Pyramid(mov), model, initial)
