"""Synthetic focal stacks with known ground truth.

Renders an all-in-focus texture and a height map into a focal stack with a
thin-lens defocus model (disc PSF, layered occlusion, sensor noise), for
tests, sample data and quality benchmarks.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

__all__ = ["HEIGHT_KINDS", "height_field", "render_stack", "texture"]

HEIGHT_KINDS = ("plane", "dome", "terraces", "object", "smooth")

_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def _check_shape(shape) -> tuple[int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"shape must be a pair of positive ints (rows, cols), got {shape!r}")
    return out


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_nonnegative(value, name: str) -> float:
    if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _rescale(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _noise_band(rng: np.random.Generator, shape, sigma: float, sigma_hi: float = 0.0):
    """Periodic white noise low-passed at ``sigma`` (minus ``sigma_hi``), unit std."""
    # Fourier-domain filtering costs the same at the large sigmas of coarse octaves.
    spectrum = sfft.rfft2(rng.standard_normal(shape))
    lowpass = ndi.fourier_gaussian(spectrum, sigma, n=shape[1])
    if sigma_hi:
        lowpass -= ndi.fourier_gaussian(spectrum, sigma_hi, n=shape[1])
    f = sfft.irfft2(lowpass, s=shape)
    return (f - f.mean()) / (f.std() + 1e-12)


def _shape_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Mask of one random disc, thick line segment or convex polygon."""
    M, N = yy.shape
    size = min(M, N) * rng.uniform(0.04, 0.18)
    cy, cx = rng.uniform(0, M), rng.uniform(0, N)
    kind = rng.integers(3)
    if kind == 0:
        return (yy - cy) ** 2 + (xx - cx) ** 2 < size**2
    if kind == 1:
        angle = rng.uniform(0, np.pi)
        dy, dx = np.array([np.sin(angle), np.cos(angle)]) * size * rng.uniform(2, 5)
        t = np.clip(((yy - cy) * dy + (xx - cx) * dx) / (dy**2 + dx**2), 0.0, 1.0)
        half_width = rng.uniform(0.75, 0.12 * size + 1.0)
        return (yy - cy - t * dy) ** 2 + (xx - cx - t * dx) ** 2 < half_width**2
    n_vert = rng.integers(3, 8)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vert))
    radii = size * rng.uniform(0.6, 1.2, n_vert)
    vy, vx = cy + radii * np.sin(angles), cx + radii * np.cos(angles)
    # Vertices sorted by angle make a star-shaped polygon; testing the point
    # against each edge's half-plane keeps only the convex core, which is fine.
    mask = np.ones((M, N), dtype=bool)
    for i in range(n_vert):
        j = (i + 1) % n_vert
        cross = (vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i])
        mask &= cross >= 0
    return mask


def texture(shape, *, channels: int | None = None, seed: int = 0) -> np.ndarray:
    """Procedural all-in-focus image, textured everywhere at several scales.

    The image is a smooth tone (or colour) field overlaid with random
    sharp-edged discs, strokes and polygons, plus band-pass noise octaves in
    luminance so that every pixel carries fine detail for focus measures.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(M, N)``.
    channels : int, optional
        Number of colour channels (3 for RGB). ``None`` gives a grayscale image.
    seed : int, optional
        Seed for :func:`numpy.random.default_rng`; output is deterministic.

    Returns
    -------
    image : ndarray of float32
        Shape ``(M, N)`` or ``(M, N, channels)``, values in [0, 1].
    """
    shape = _check_shape(shape)
    n_ch = 1 if channels is None else _check_int(channels, "channels", 1)
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape, dtype=np.float64)

    # Equal variance per octave approximates the 1/f amplitude spectrum of
    # natural images; the finest octaves get extra weight so that a blur of
    # sigma 1-2 px visibly removes detail.
    detail = np.zeros(shape)
    sigma, coarsest = 0.7, max(min(shape) / 8, 1.0)
    while sigma <= coarsest:
        detail += (1.6 if sigma < 2 else 1.0) * _noise_band(rng, shape, sigma, 2 * sigma)
        sigma *= 2
    detail /= detail.std() + 1e-12

    smooth_sigma = max(min(shape) / 6, 1.0)
    if n_ch == 1:
        tone = 0.5 + 0.12 * _noise_band(rng, shape, smooth_sigma)[..., None]
    else:
        # A few random colours blended by smooth softmax weights give regions
        # of different hue with soft transitions.
        palette = rng.uniform(0.15, 0.85, (4, n_ch))
        logits = np.stack([2.5 * _noise_band(rng, shape, smooth_sigma) for _ in palette])
        weights = np.exp(logits - logits.max(axis=0))
        weights /= weights.sum(axis=0)
        tone = np.tensordot(weights, palette, axes=(0, 0))

    n_shapes = int(np.clip(shape[0] * shape[1] / 5000, 3, 60))
    for _ in range(n_shapes):
        tone[_shape_mask(rng, yy, xx)] = rng.uniform(0.1, 0.9, n_ch)

    # tanh soft-clips instead of hard-clipping, so saturated areas keep texture.
    image = 0.5 + 0.5 * np.tanh(2.0 * (tone + 0.13 * detail[..., None] - 0.5))
    image = image.astype(np.float32)
    return image[..., 0] if channels is None else image


def height_field(kind: str, shape, *, seed: int = 0) -> np.ndarray:
    """Ground-truth height map of a given kind, normalised to [0, 1].

    Higher values are nearer to the camera.

    Parameters
    ----------
    kind : {'plane', 'dome', 'terraces', 'object', 'smooth'}
        ``'plane'``: tilted plane, mostly left-to-right with a slight diagonal.
        ``'dome'``: centred paraboloid cap, 0 at the corners and 1 at the top.
        ``'terraces'``: 3-5 flat diagonal steps separated by sharp jumps.
        ``'object'``: irregular blob at height 0.9-1 over a background at
        0-0.05, with a sharp occlusion edge.
        ``'smooth'``: low-pass filtered random surface.
    shape : tuple of int
        Output shape ``(M, N)``.
    seed : int, optional
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    height : ndarray of float32
        Shape ``(M, N)``, values in [0, 1].
    """
    if kind not in HEIGHT_KINDS:
        raise ValueError(f"kind must be one of {HEIGHT_KINDS}, got {kind!r}")
    shape = _check_shape(shape)
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape, dtype=np.float64)
    M, N = shape

    if kind == "plane":
        theta = np.deg2rad(rng.uniform(10, 25))
        h = _rescale(xx * np.cos(theta) + yy * np.sin(theta))
    elif kind == "dome":
        cy, cx = (M - 1) / 2, (N - 1) / 2
        h = 1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / max(cy**2 + cx**2, 1e-12)
    elif kind == "terraces":
        n_steps = int(rng.integers(3, 6))
        theta = np.deg2rad(rng.uniform(25, 50))
        # A gentle wobble makes the step edges curved rather than ruler-straight.
        wobble = 0.04 * max(M, N) * _noise_band(rng, shape, max(min(shape) / 5, 1.0))
        u = _rescale(xx * np.cos(theta) + yy * np.sin(theta) + wobble)
        h = np.minimum(np.floor(u * n_steps), n_steps - 1) / (n_steps - 1)
    elif kind == "object":
        cy, cx = M * rng.uniform(0.4, 0.6), N * rng.uniform(0.4, 0.6)
        rho, phi = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
        outline = np.ones(shape)
        for k in range(2, 6):
            outline += rng.uniform(0.02, 0.25) / k * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        outline *= 0.3 * min(M, N)
        inside = rho < outline
        top = 0.9 + 0.1 * np.clip(1 - (rho / outline) ** 2, 0, 1)
        background = 0.05 * _rescale(xx + 0.3 * yy)
        h = np.where(inside, top, background)
    else:
        h = _rescale(_noise_band(rng, shape, max(min(shape) / 8, 1.0)))
    return np.clip(h, 0, 1).astype(np.float32)


def _defocus_radius(height, k, blur_per_slice: float):
    """Circle-of-confusion radius in pixels (linear thin-lens approximation)."""
    return blur_per_slice * np.abs(np.asarray(height) - k)


def _disc_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Pillbox PSF normalised to sum 1, each weight the pixel's area inside the disc."""
    # Area coverage (estimated on a supersampled grid) anti-aliases the rim.
    half = max(int(np.ceil(radius - 0.5)), 0)
    if half == 0:
        # The disc fits inside the centre pixel: no blur.
        return np.ones((1, 1))
    sub = (np.arange((2 * half + 1) * supersample) + 0.5) / supersample - (half + 0.5)
    inside = sub[:, None] ** 2 + sub[None, :] ** 2 <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _kernel_fft(radius: float, fft_shape: tuple[int, int]) -> np.ndarray:
    kernel = _disc_kernel(radius)
    half = kernel.shape[0] // 2
    padded = np.zeros(fft_shape, dtype=np.float32)
    padded[: kernel.shape[0], : kernel.shape[1]] = kernel
    # Centre the kernel on the origin so the circular convolution is unshifted.
    return sfft.rfft2(np.roll(padded, (-half, -half), axis=(0, 1)))


def render_stack(
    sharp: np.ndarray,
    height: np.ndarray,
    n_slices: int,
    *,
    blur_per_slice: float = 1.5,
    noise: float = 0.01,
    seed: int = 0,
    dtype=np.uint8,
    layers_per_slice: int = 4,
) -> np.ndarray:
    """Render a focal stack of a textured surface with a thin-lens defocus model.

    Slice ``k`` is focused at height ``k``; a point at height ``h`` is imaged
    in slice ``k`` with a disc PSF of radius ``blur_per_slice * |h - k|``.
    Occlusion is modelled by cutting the surface into depth layers and
    compositing them far to near, so blurred near edges spill over the far
    background. Sensor noise (read plus shot) is added before quantisation.

    Parameters
    ----------
    sharp : ndarray
        All-in-focus image ``(M, N)`` or ``(M, N, C)``: float in [0, 1], or
        unsigned integers scaled by their full range.
    height : ndarray
        Height map ``(M, N)`` in slice units; larger is nearer to the camera.
    n_slices : int
        Number of slices in the stack.
    blur_per_slice : float, optional
        Blur-disc radius in pixels per slice unit of defocus.
    noise : float, optional
        Read-noise standard deviation in [0, 1] units; shot noise adds a
        variance of ``noise**2 * intensity``. ``0`` renders noise-free.
    seed : int, optional
        Seed for the noise generator.
    dtype : {numpy.uint8, numpy.uint16, numpy.float32}, optional
        Output type; integer types are scaled to their full range.
    layers_per_slice : int, optional
        Depth layers per slice unit used to model occlusion.

    Returns
    -------
    stack : ndarray
        Shape ``(n_slices, M, N)`` or ``(n_slices, M, N, C)``, of ``dtype``.

    References
    ----------
    .. [1] S. W. Hasinoff and K. N. Kutulakos, "A layer-based restoration
           framework for variable-aperture photography", ICCV 2007.
    """
    sharp = np.asarray(sharp)
    if sharp.ndim not in (2, 3) or sharp.dtype.kind not in "uf":
        raise ValueError(
            f"sharp must be a float or unsigned (M, N) or (M, N, C) array, got "
            f"{sharp.dtype} of shape {sharp.shape}"
        )
    scale = np.iinfo(sharp.dtype).max if sharp.dtype.kind == "u" else 1
    height = np.asarray(height, dtype=np.float64)
    if height.shape != sharp.shape[:2]:
        raise ValueError(f"height must have shape {sharp.shape[:2]}, got {height.shape}")
    if not np.all(np.isfinite(height)):
        raise ValueError("height must be finite everywhere")
    n_slices = _check_int(n_slices, "n_slices", 1)
    layers_per_slice = _check_int(layers_per_slice, "layers_per_slice", 1)
    blur_per_slice = _check_nonnegative(blur_per_slice, "blur_per_slice")
    noise = _check_nonnegative(noise, "noise")
    dtype = np.dtype(dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of uint8, uint16, float32, got {dtype}")

    M, N = height.shape
    # Channels first, with a constant plane that becomes the layer's alpha.
    planes = np.clip(sharp / np.float32(scale), 0, 1).astype(np.float32).reshape(M, N, -1)
    C = planes.shape[-1]
    planes = np.concatenate([np.moveaxis(planes, -1, 0), np.ones((1, M, N), np.float32)])
    level = np.rint(height * layers_per_slice).astype(np.int64)
    levels = np.unique(level)
    slices = np.arange(n_slices)
    extremes = levels[[0, -1], None] / layers_per_slice
    max_radius = _defocus_radius(extremes, slices, blur_per_slice).max()
    # Reflect padding keeps the blur from pulling darkness in from the borders.
    pad = int(np.ceil(max_radius)) + 1
    planes = np.pad(planes, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    level = np.pad(level, pad, mode="reflect")

    color = np.zeros((n_slices, C, M, N), np.float32)
    alpha = np.zeros((n_slices, M, N), np.float32)
    kernel_cache: dict[tuple, np.ndarray] = {}
    for lev in levels:  # ascending height = far to near
        mask = level == lev
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        radii = _defocus_radius(lev / layers_per_slice, slices, blur_per_slice)
        margin = int(np.ceil(radii.max()))
        # Work on the layer's bounding box only (plus blur margin), which is
        # much smaller than the frame for planes, terraces and objects.
        r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, M + 2 * pad)
        c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, N + 2 * pad)
        layer = planes[:, r0:r1, c0:c1] * mask[r0:r1, c0:c1]
        # Output window: the part of the box that lies inside the image.
        o_r0, o_r1, o_c0, o_c1 = max(r0, pad), min(r1, pad + M), max(c0, pad), min(c1, pad + N)
        if o_r0 >= o_r1 or o_c0 >= o_c1:
            continue
        win = (slice(None), slice(o_r0 - r0, o_r1 - r0), slice(o_c0 - c0, o_c1 - c0))
        out = (slice(o_r0 - pad, o_r1 - pad), slice(o_c0 - pad, o_c1 - pad))
        # Zero-padding by the margin makes the FFT's circular convolution
        # linear over the window.
        fft_shape = tuple(sfft.next_fast_len(n + margin, real=True) for n in layer.shape[1:])
        spectrum = None
        for k, radius in enumerate(radii):
            if radius <= 0.5:
                blurred = layer[win]
            else:
                if spectrum is None:
                    spectrum = sfft.rfft2(layer, s=fft_shape, workers=-1)
                key = (round(float(radius), 9), fft_shape)
                if key not in kernel_cache:
                    kernel_cache[key] = _kernel_fft(radius, fft_shape)
                blurred = sfft.irfft2(spectrum * kernel_cache[key], s=fft_shape, workers=-1)
                blurred = blurred[:, : r1 - r0, : c1 - c0][win]
            a = np.clip(blurred[-1], 0, 1)
            target = color[k][(slice(None), *out)]
            target *= 1 - a
            target += blurred[:-1]
            alpha[k][out] *= 1 - a
            alpha[k][out] += a

    stack = _capture(color, alpha, noise, seed, dtype)
    return stack[..., 0] if sharp.ndim == 2 else stack


def _capture(
    color: np.ndarray, alpha: np.ndarray, noise: float, seed: int, dtype: np.dtype
) -> np.ndarray:
    """The sensor's view of each slice's composited layers: (Z, M, N, C) in `dtype`."""
    rng = np.random.default_rng(seed)
    stack = np.empty((color.shape[0], *color.shape[2:], color.shape[1]), dtype=dtype)
    for k in range(color.shape[0]):
        # Over-compositing of partial blurred layers leaves total alpha < 1
        # at layer boundaries; normalising removes the dark seams.
        img = np.moveaxis(color[k] / np.maximum(alpha[k], 1e-6), 0, -1)
        if noise > 0:
            sigma = noise * np.sqrt(1 + np.clip(img, 0, 1))
            img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
        img = np.clip(img, 0, 1)
        if dtype.kind == "u":
            img = np.rint(img * np.iinfo(dtype).max)
        stack[k] = img
    return stack
