"""Phase correlation: shift, and scale and rotation from log-polar Fourier magnitudes.

The global search of a registration, at a coarse pyramid level, before ECC
refines it (Reddy & Chatterji 1996, :doi:`10.1109/83.506761`).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi


def _hann(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _phase_peak(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shift d (rows, cols) such that ``b(x + d) ~ a(x)``, by phase correlation."""
    cross = sfft.rfft2(b) * sfft.rfft2(a).conj()
    mag = np.abs(cross)
    # The floor keeps noise-dominated frequencies (those blurred away) from being amplified.
    cross /= mag + 1e-3 * mag.max() + 1e-30
    corr = sfft.irfft2(cross, s=a.shape)
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape))
    sizes, shift = np.array(corr.shape), peak.astype(np.float64)
    for axis in (0, 1):
        step = np.eye(2, dtype=int)[axis]
        lo, mid, hi = (corr[tuple((peak + d * step) % sizes)] for d in (-1, 0, 1))
        if lo - 2 * mid + hi < 0:  # parabolic sub-pixel vertex, only at a true maximum
            shift[axis] += 0.5 * (lo - hi) / (lo - 2 * mid + hi)
    return (shift + sizes / 2) % sizes - sizes / 2


def _scale_rotation(ref: np.ndarray, mov: np.ndarray) -> tuple[float, float]:
    """Scale and angle of ``mov`` against ``ref`` from their log-polar Fourier magnitudes."""
    n = max(ref.shape)
    n_angle, n_radius = 360, n // 2
    radius = np.geomspace(2.0, 0.45 * n, n_radius)
    angle = np.linspace(0, np.pi, n_angle, endpoint=False)
    rows = n // 2 + radius[None, :] * np.sin(angle)[:, None]
    cols = n // 2 + radius[None, :] * np.cos(angle)[:, None]
    win = _hann(ref.shape)
    polar = []
    for image in (ref, mov):
        spec = np.abs(sfft.fftshift(sfft.fft2(image * win, s=(n, n))))
        polar.append(ndi.map_coordinates(np.log1p(spec), [rows, cols], order=1))
    # Only the radius axis needs a window: the angle axis is periodic with period pi.
    rwin = np.hanning(n_radius)[None, :]
    d_angle, d_radius = _phase_peak(polar[0] * rwin, polar[1] * rwin)
    step = np.log(radius[1] / radius[0])
    return float(np.exp(-d_radius * step)), float(-d_angle * np.pi / n_angle)
