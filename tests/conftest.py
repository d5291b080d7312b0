"""Shared fixtures: small synthetic stacks whose answer is known by construction."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings
from scipy import ndimage

# Property tests: few, reproducible examples in CI (the suite stays well under a
# minute); HYPOTHESIS_PROFILE=dev searches longer, with a fresh seed each run.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None)
settings.register_profile("dev", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def region_stack(
    n_slices: int = 5,
    shape: tuple[int, int] = (96, 128),
    *,
    channels: int | None = None,
    dtype: type = np.uint8,
    blur: float = 1.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stack of vertical bands, each band sharp in exactly one slice.

    Returns ``(stack, truth, sharp)``: slices ``(Z, M, N[, C])`` in `dtype`, the
    true slice index per pixel ``(M, N)``, and the all-in-focus image as float
    in [0, 1]. A pixel in band ``t`` seen in slice ``k`` is blurred with
    ``sigma = blur * |t - k|``, so sharpness falls off with distance in slices.
    """
    rng = np.random.default_rng(seed)
    full = shape if channels is None else (*shape, channels)
    sharp = ndimage.gaussian_filter(rng.random(full), (0.7, 0.7, 0)[: len(full)])
    sharp = (sharp - sharp.min()) / (sharp.max() - sharp.min())
    cols = np.arange(shape[1])
    truth = np.broadcast_to((cols * n_slices) // shape[1], shape).astype(np.intp)
    slices = []
    for k in range(n_slices):
        out = np.empty_like(sharp)
        for t in range(n_slices):
            s = blur * abs(t - k)
            img = ndimage.gaussian_filter(sharp, (s, s, 0)[: len(full)]) if s else sharp
            out[truth == t] = img[truth == t]
        slices.append(out)
    stack = np.stack(slices)
    if np.dtype(dtype).kind == "u":
        stack = np.rint(stack * np.iinfo(dtype).max).astype(dtype)
    else:
        stack = stack.astype(dtype)
    return stack, np.ascontiguousarray(truth), sharp


def focused(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus that varies across the frame (sharp left, `sigma` right), plus sensor noise."""
    ramp = np.clip(np.linspace(-0.5, 1.5, image.shape[1]), 0, 1)
    blurred = ndimage.gaussian_filter(image, sigma) if sigma else image
    return image * (1 - ramp) + blurred * ramp + rng.normal(0, 0.01, image.shape)


def band_interior(truth: np.ndarray, margin: int) -> np.ndarray:
    """Pixels at least `margin` columns away from a band edge."""
    edges = np.flatnonzero(np.diff(truth[0])) + 0.5
    cols = np.arange(truth.shape[1])
    far = np.all(np.abs(cols[:, None] - edges[None, :]) > margin, axis=1)
    return np.broadcast_to(far, truth.shape)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of images in [0, 1]."""
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return float(10 * np.log10(1 / mse))


@pytest.fixture
def write_slices(tmp_path):
    """Write a (Z, M, N[, C]) stack as numbered PNG files; return their paths."""
    from stacker.outputs import write_image

    def _write(stack: np.ndarray, fmt: str = "png", stem: str = "z") -> list:
        paths = []
        for k, plane in enumerate(stack):
            path = tmp_path / f"{stem}{k}.{fmt}"
            write_image(path, plane)
            paths.append(path)
        return paths

    return _write
