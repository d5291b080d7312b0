"""The stacking pipeline: stream slices through focus, selection and compositing."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .composite import HardPick, PeakNeighbours, neighbour_weights
from .focus import check_measure, noise_variance, to_gray
from .io import Stack, StackWarning, convert_dtype, open_stack
from .pyramid import PyramidFusion
from .select import ArgmaxSelector, PeakTracker, regularize_depth, subslice_peak

__all__ = ["METHODS", "MergeResult", "merge"]

METHODS = ("depthmap", "pyramid", "argmax")

StackInput = str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray] | Stack


@dataclass
class MergeResult:
    """What :func:`merge` returns.

    Attributes
    ----------
    composite : (M, N) or (M, N, 3) ndarray
        All-in-focus image, in the input's dtype and channels.
    depth : (M, N) ndarray of float32
        Depth in slice units: the index of the sharpest slice per pixel.
    sharpness : (M, N) ndarray of float32
        Focus value of the chosen slice (0 where the stack has no texture).
    confidence : (M, N) ndarray of float32
        How much the depth can be trusted, in [0, 1]: high where the focus
        curve has a clear peak, low on flat, textureless areas.
    n_slices : int
        Number of slices stacked.
    names : list of str
        Slice labels in stacking order (file names, or ``slice i``).
    """

    composite: np.ndarray
    depth: np.ndarray
    sharpness: np.ndarray
    confidence: np.ndarray
    n_slices: int
    names: list[str] = field(default_factory=list)


def merge(
    inputs: StackInput,
    *,
    method: str = "depthmap",
    sigma: float = 2.0,
    measure: str = "variance",
    order: str = "natural",
    progress: Callable[[int, int], None] | None = None,
) -> MergeResult:
    """Stack a focal series into an all-in-focus composite and a depth map.

    Slices are decoded one at a time; only running per-pixel state is kept,
    so memory does not grow with the number of slices.

    Parameters
    ----------
    inputs : path, sequence of paths, (Z, M, N[, 3]) ndarray or sequence of arrays
        The stack: image files, a folder, a multi-page TIFF, or arrays.
    method : {'depthmap', 'pyramid', 'argmax'}, optional
        ``'depthmap'`` (default): sub-slice depth from the focus curve around
        its peak, regularised where focus is unreliable, and a composite that
        blends the peak slice with its neighbours by how sharp they are.
        ``'pyramid'``: Laplacian-pyramid fusion choosing each level's
        coefficients by the focus measure at that scale. ``'argmax'``: each
        pixel from its sharpest slice (the reference).
    sigma : float, optional
        Focus window (Gaussian standard deviation) in pixels.
    measure : str, optional
        Focus measure name (see :data:`stacker.focus.FOCUS_MEASURES`).
    order : {'natural', 'given'}, optional
        File order (see :func:`stacker.io.open_stack`).
    progress : callable, optional
        Called as ``progress(done, total)`` after each slice.

    Returns
    -------
    result : MergeResult
        Composite, depth map, sharpness and confidence.

    Raises
    ------
    StackError
        If the inputs cannot be read or do not form a consistent stack.
    ValueError
        If `method`, `measure` or `sigma` is not valid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    >>> blurred = np.full_like(sharp, 128)
    >>> r = merge([blurred, sharp], method="argmax")
    >>> r.composite.dtype, float(r.depth.mean())
    (dtype('uint8'), 1.0)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    measure_func = check_measure(measure, sigma)
    stack = open_stack(inputs, order=order)
    if len(stack) == 1:
        warnings.warn(
            f"only one slice ({stack.names[0]}); the composite is that slice",
            StackWarning,
            stacklevel=2,
        )
    state = _METHOD_STATE[method](stack.shape, stack.dtype)
    for k, image in enumerate(stack):
        gray = to_gray(image)
        state.update(image, gray, measure_func(gray, sigma=float(sigma)))
        if progress is not None:
            progress(k + 1, len(stack))
    composite, depth, sharpness, confidence = state.result()
    return MergeResult(
        composite=composite,
        depth=depth,
        sharpness=sharpness,
        confidence=confidence,
        n_slices=len(stack),
        names=stack.names,
    )


class _Argmax:
    """Hard pick of each pixel's sharpest slice."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.selector = ArgmaxSelector(shape[:2])
        self.pick = HardPick(shape, dtype)

    def update(self, image: np.ndarray, gray: np.ndarray, focus: np.ndarray) -> None:
        self.pick.update(image, self.selector.update(focus))

    def result(self) -> tuple[np.ndarray, ...]:
        value = self.selector.value
        return self.pick.image, self.selector.index.astype(np.float32), value, _has_texture(value)


class _Pyramid(_Argmax):
    """Laplacian-pyramid fusion; depth from the argmax."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.selector = ArgmaxSelector(shape[:2])
        self.fusion = PyramidFusion(shape)
        self.dtype = dtype

    def update(self, image: np.ndarray, gray: np.ndarray, focus: np.ndarray) -> None:
        self.selector.update(focus)
        self.fusion.update(convert_dtype(image, "float32"), focus)

    def result(self) -> tuple[np.ndarray, ...]:
        fused = self.fusion.result()
        composite = (
            fused.astype(self.dtype) if self.dtype.kind == "f" else convert_dtype(fused, self.dtype)
        )
        value = self.selector.value
        return composite, self.selector.index.astype(np.float32), value, _has_texture(value)


class _DepthMap:
    """Sub-slice depth, regularised; composite blended around the focus peak."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.tracker = PeakTracker(shape[:2])
        self.keep = PeakNeighbours(shape, dtype)
        self.noise = np.inf

    def update(self, image: np.ndarray, gray: np.ndarray, focus: np.ndarray) -> None:
        # The most defocused slice gives the least texture-biased noise estimate.
        self.noise = min(self.noise, noise_variance(gray))
        self.keep.update(image, *self.tracker.update(focus))

    def result(self) -> tuple[np.ndarray, ...]:
        t = self.tracker
        weights = neighbour_weights(t.before, t.value, t.after, self.noise)
        composite = self.keep.blend(weights)
        offset, _ = subslice_peak(t.before, t.value, t.after)
        confidence = _peak_confidence(t.value, t.total, t.count, self.noise)
        depth = regularize_depth(t.index + offset, confidence)
        np.clip(depth, 0, t.count - 1, out=depth)
        return composite, depth, t.value, confidence


_METHOD_STATE = {"depthmap": _DepthMap, "pyramid": _Pyramid, "argmax": _Argmax}


def _has_texture(value: np.ndarray) -> np.ndarray:
    return (value > 0).astype(np.float32)


def _peak_confidence(peak: np.ndarray, total: np.ndarray, n: int, noise: float) -> np.ndarray:
    """Depth reliability in [0, 1]: how far the focus peak rises above the noise.

    The excess of the peak over the mean of the other slices, in units of
    the noise variance (the focus a textureless pixel shows), maps to 0 at
    noise level and to 1 a few noise units above.
    """
    if n < 2:
        return _has_texture(peak)
    others = (total - peak) / (n - 1)
    snr = (peak - others) / np.float32(max(noise, 1e-12))
    return np.clip((snr - 1) / 4, 0, 1).astype(np.float32)
