"""The stacking pipeline: stream slices through focus, selection and compositing."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._parallel import ordered_map
from .align import (
    MODELS,
    block_mean,
    common_crop,
    estimate_gain,
    estimate_stack_transforms,
    warp,
)
from .composite import HardPick, PeakNeighbours, neighbour_weights
from .focus import check_measure, noise_variance, to_gray
from .io import Stack, StackError, StackWarning, convert_dtype, open_stack, round_into
from .pyramid import PyramidFusion
from .select import ArgmaxSelector, PeakTracker, regularize_depth, subslice_peak

__all__ = ["ALIGN_FAIL", "METHODS", "MergeResult", "merge"]

METHODS = ("depthmap", "pyramid", "argmax")
ALIGN_FAIL = ("keep", "drop", "error")
# Registration quality (correlation of band-passed slices) below which a slice counts
# as not registered.
MIN_MATCH = 0.2

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
    transforms : list of (3, 3) ndarray
        Per input slice, the matrix mapping reference-frame ``(row, col, 1)``
        to that slice's pixels (identity without alignment).
    gains : list of float
        Per input slice, the brightness gain applied (1 without correction).
    crop : tuple of slice
        Rows and columns of the reference frame the outputs cover.
    dropped : list of str
        Slices left out because they did not register.
    """

    composite: np.ndarray
    depth: np.ndarray
    sharpness: np.ndarray
    confidence: np.ndarray
    n_slices: int
    names: list[str] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    crop: tuple[slice, slice] = (slice(None), slice(None))
    dropped: list[str] = field(default_factory=list)


def merge(
    inputs: StackInput,
    *,
    method: str = "depthmap",
    sigma: float = 2.0,
    measure: str = "variance",
    order: str = "natural",
    align: str = "similarity",
    align_reference: int | None = None,
    transforms: Sequence[np.ndarray] | None = None,
    crop: bool = True,
    brightness: bool = True,
    on_align_fail: str = "keep",
    threads: int | None = None,
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
    align : {'similarity', 'translation', 'affine', 'none'}, optional
        Motion model for registering every slice to the reference slice
        before stacking (focus breathing, drift, rotation); see
        :mod:`stacker.align`. Transforms are estimated in a first, light pass
        over downscaled slices and applied while stacking.
    align_reference : int, optional
        Index of the reference slice (default: the middle one, ``n // 2``).
        The outputs are in its frame.
    transforms : sequence of (3, 3) ndarray, optional
        Transforms to apply instead of estimating them (one per slice, as in
        :attr:`MergeResult.transforms`).
    crop : bool, optional
        Crop the outputs to the largest rectangle every slice covers (default).
        If False, keep the reference frame whole: pixels some slices do not
        cover come from the slices that do, and get zero confidence.
    brightness : bool, optional
        Correct each slice's exposure (a gain, estimated against the reference
        slice on low-passed images) before focus and compositing.
    on_align_fail : {'keep', 'drop', 'error'}, optional
        What to do with a slice that does not register: stack it with its
        neighbour's transform, leave it out, or stop with a ``StackError``.
        Each failure is a :class:`StackWarning` naming the slice.
    threads : int, optional
        Worker threads that decode, warp and measure upcoming slices while the
        running result takes the current one (default: all cores).
    progress : callable, optional
        Called as ``progress(done, total)`` after each slice of each pass
        (two passes when aligning).

    Returns
    -------
    result : MergeResult
        Composite, depth map, sharpness and confidence.

    Raises
    ------
    StackError
        If the inputs cannot be read or do not form a consistent stack.
    ValueError
        If `method`, `measure`, `sigma`, `align`, `align_reference`,
        `transforms` or `on_align_fail` is not valid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    >>> blurred = np.full_like(sharp, 128)
    >>> r = merge([blurred, sharp], method="argmax", align="none")
    >>> r.composite.dtype, float(r.depth.mean())
    (dtype('uint8'), 1.0)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if align not in MODELS:
        raise ValueError(f"align must be one of {', '.join(MODELS)}; got {align!r}")
    if on_align_fail not in ALIGN_FAIL:
        raise ValueError(
            f"on_align_fail must be one of {', '.join(ALIGN_FAIL)}; got {on_align_fail!r}"
        )
    measure_func = check_measure(measure, sigma)
    threads = (os.cpu_count() or 1) if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    stack = open_stack(inputs, order=order)
    n = len(stack)
    if n == 1:
        warnings.warn(
            f"only one slice ({stack.names[0]}); the composite is that slice",
            StackWarning,
            stacklevel=2,
        )
    reference = n // 2 if align_reference is None else align_reference
    if not 0 <= reference < n:
        raise ValueError(f"align_reference must be a slice index in 0..{n - 1}, got {reference}")
    # Registration needs some image to work with; smaller frames are taken as still.
    aligning = transforms is None and align != "none" and n > 1 and min(stack.shape[:2]) >= 16
    passes = 2 if aligning else 1

    def report(done: int) -> None:
        if progress is not None:
            progress(done, passes * n)

    if transforms is not None:
        matrices = _check_transforms(transforms, n)
    elif aligning:
        matrices, quality = estimate_stack_transforms(
            stack,
            model=align,
            reference=reference,
            threads=threads,
            progress=lambda d, t: report(d),
        )
        matrices = [_snap(m, stack.shape) for m in matrices]
        matrices = _handle_failures(stack.names, matrices, quality, reference, on_align_fail)
    else:
        matrices = [np.eye(3)] * n
    keep = [k for k in range(n) if matrices[k] is not None]
    window = common_crop([matrices[k] for k in keep], stack.shape)
    frame = window if crop else (slice(0, stack.shape[0]), slice(0, stack.shape[1]))
    out_shape = (frame[0].stop - frame[0].start, frame[1].stop - frame[1].start)
    inner = tuple(
        slice(w.start - f.start, w.stop - f.start) for w, f in zip(window, frame, strict=True)
    )
    # Gains are estimated on heavily low-passed images: block means of about
    # 256 px across are plenty, and keep the reference from costing a frame.
    block = max(1, int(np.ceil(max(out_shape) / 256)))
    reference_gray = None
    if brightness and n > 1:
        reference_gray = block_mean(to_gray(stack[reference])[frame], block)

    state = _METHOD_STATE[method]((*out_shape, *stack.shape[2:]), stack.dtype)

    def prepare(k: int) -> tuple:
        image, gray, valid, gain = _align_slice(stack[k], matrices[k], frame, reference_gray, block)
        piece = _central(gray[inner], _NOISE_SIDE)
        noise = noise_variance(piece) if min(piece.shape) >= 3 else 0.0
        focus = measure_func(gray, sigma=float(sigma), overwrite=True)
        if valid is not None:
            focus[~valid] = -1  # any slice that covers the pixel wins over one that does not
        return valid, gain, state.prepare(image, focus, noise)

    # Slices that cover only part of the frame, counted per pixel.
    covered = None
    partial = 0
    gains = [1.0] * n
    for done, (k, (valid, gain, prepared)) in enumerate(
        zip(keep, ordered_map(prepare, keep, threads), strict=True), start=1
    ):
        gains[k] = gain
        if valid is not None:
            covered = valid.astype(np.uint16) if covered is None else covered + valid
            partial += 1
        state.update(prepared)
        report((passes - 1) * n + done)
    composite, depth, sharpness, confidence = state.result()
    if covered is not None:
        confidence[covered < partial] = 0
    identity = np.eye(3)
    return MergeResult(
        composite=composite,
        depth=depth,
        sharpness=sharpness,
        confidence=confidence,
        n_slices=len(keep),
        names=[stack.names[k] for k in keep],
        transforms=[identity if m is None else m for m in matrices],
        gains=gains,
        crop=frame,
        dropped=[stack.names[k] for k in range(n) if matrices[k] is None],
    )


def _check_transforms(transforms: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    matrices = [np.asarray(m, dtype=np.float64) for m in transforms]
    if len(matrices) != n or any(m.shape != (3, 3) for m in matrices):
        raise ValueError(f"transforms must be {n} matrices of shape (3, 3), one per slice")
    return matrices


# Transforms that move no pixel of the frame further than this are taken as
# identity: resampling would blur the slice for less than a third of a pixel.
SNAP_PIXELS = 0.3


def _snap(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = shape[0] - 1, shape[1] - 1
    corners = np.array([[0, 0, rows, rows], [0, cols, 0, cols], [1, 1, 1, 1]], dtype=np.float64)
    moved = np.abs((matrix - np.eye(3)) @ corners)[:2].max()
    return np.eye(3) if moved < SNAP_PIXELS else matrix


def _handle_failures(
    names: list[str], matrices: list[np.ndarray], quality: list[float], reference: int, policy: str
) -> list[np.ndarray | None]:
    """Warn about slices that did not register; drop them (None) or stop, as asked."""
    out: list[np.ndarray | None] = list(matrices)
    for k, q in enumerate(quality):
        if k == reference or q >= MIN_MATCH:
            continue
        message = f"{names[k]}: did not register to its neighbours (match {q:.2f})"
        if policy == "error":
            raise StackError(f"{message}; use --on-align-fail keep or drop to go on")
        action = "left out" if policy == "drop" else "stacked with its neighbour's transform"
        warnings.warn(f"{message}; {action}", StackWarning, stacklevel=3)
        if policy == "drop":
            out[k] = None
    return out


def _align_slice(
    image: np.ndarray,
    matrix: np.ndarray,
    frame: tuple[slice, slice],
    reference_gray: np.ndarray | None,
    block: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """Warp one slice into the output frame and correct its brightness.

    `reference_gray` is the reference slice's grey, block-averaged by `block`.
    Returns the slice, its grey version, where it has data (None if
    everywhere) and the gain.
    """
    shift = np.eye(3)
    shift[:2, 2] = frame[0].start, frame[1].start
    shape = (frame[0].stop - frame[0].start, frame[1].stop - frame[1].start)
    image, valid = warp(image, matrix @ shift, output_shape=shape)
    gray = to_gray(image)
    gain = 1.0
    if reference_gray is not None:
        small_valid = block_mean(valid, block) == 1
        gain = estimate_gain(reference_gray, block_mean(gray, block), small_valid)
        # Gains this close to 1 are estimation noise; rescaling would only round.
        if abs(gain - 1) > 1e-3:
            image = _apply_gain(image, gain)
            gray *= np.float32(gain)
        else:
            gain = 1.0
    return image, gray, (None if valid.all() else valid), gain


def _apply_gain(image: np.ndarray, gain: float) -> np.ndarray:
    return round_into(image * np.float32(gain), image.dtype).astype(image.dtype)


class _Argmax:
    """Hard pick of each pixel's sharpest slice.

    Each method's state has a ``prepare`` step, run in worker threads on one
    slice at a time, and an ``update`` step, run in stack order, that folds
    the prepared slice into the running result.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.selector = ArgmaxSelector(shape[:2])
        self.pick = HardPick(shape, dtype)

    def prepare(self, image: np.ndarray, focus: np.ndarray, noise: float) -> tuple:
        return image, focus

    def update(self, prepared: tuple) -> None:
        image, focus = prepared
        self.pick.update(image, self.selector.update(focus))

    def result(self) -> tuple[np.ndarray, ...]:
        return _with_argmax_depth(self.pick.image, self.selector)


class _Pyramid:
    """Laplacian-pyramid fusion; depth from the argmax."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.selector = ArgmaxSelector(shape[:2])
        self.fusion = PyramidFusion(shape)
        self.dtype = dtype

    def prepare(self, image: np.ndarray, focus: np.ndarray, noise: float) -> tuple:
        return focus, self.fusion.decompose(convert_dtype(image, "float32"), focus)

    def update(self, prepared: tuple) -> None:
        focus, decomposed = prepared
        self.selector.update(focus)
        self.fusion.add(decomposed)

    def result(self) -> tuple[np.ndarray, ...]:
        fused = self.fusion.result()
        composite = (
            fused.astype(self.dtype) if self.dtype.kind == "f" else convert_dtype(fused, self.dtype)
        )
        return _with_argmax_depth(composite, self.selector)


class _DepthMap:
    """Sub-slice depth, regularised; composite blended around the focus peak."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.tracker = PeakTracker(shape[:2])
        self.keep = PeakNeighbours(shape, dtype)
        self.noise = np.inf

    def prepare(self, image: np.ndarray, focus: np.ndarray, noise: float) -> tuple:
        return image, focus, noise

    def update(self, prepared: tuple) -> None:
        image, focus, noise = prepared
        # The most defocused slice gives the least texture-biased noise estimate.
        self.noise = min(self.noise, noise)
        self.keep.update(image, *self.tracker.update(focus))

    def result(self) -> tuple[np.ndarray, ...]:
        # Each step lets go of the frames it no longer needs: on large images
        # the finishing steps, not the stream, set the peak memory.
        t, keep = self.tracker, self.keep
        t.release()
        keep.release()
        composite = keep.blend(neighbour_weights(t.before, t.value, t.after, self.noise))
        del self.keep, keep
        offset = subslice_peak(t.before, t.value, t.after)[0]
        t.before = t.after = None
        confidence = _peak_confidence(t.value, t.total, t.count, self.noise)
        t.total = None
        offset += t.index
        depth = regularize_depth(offset, confidence)
        np.clip(depth, 0, t.count - 1, out=depth)
        return composite, depth, t.value, confidence


# Only the part every slice covers has real pixels (and noise) in it; a central
# piece of it this wide is plenty for a stationary noise level.
_NOISE_SIDE = 1024


def _central(image: np.ndarray, side: int) -> np.ndarray:
    rows, cols = (max(0, (n - side) // 2) for n in image.shape[:2])
    return image[rows : rows + side, cols : cols + side]


_METHOD_STATE = {"depthmap": _DepthMap, "pyramid": _Pyramid, "argmax": _Argmax}


def _with_argmax_depth(composite: np.ndarray, selector: ArgmaxSelector) -> tuple[np.ndarray, ...]:
    """Composite, whole-slice depth, sharpness and a textured/flat confidence."""
    value = selector.value
    return composite, selector.index.astype(np.float32), value, _has_texture(value)


def _has_texture(value: np.ndarray) -> np.ndarray:
    return (value > 0).astype(np.float32)


def _peak_confidence(peak: np.ndarray, total: np.ndarray, n: int, noise: float) -> np.ndarray:
    """Depth reliability in [0, 1]: how clearly the focus curve peaks.

    Two conditions, multiplied: the peak's excess over the mean of the other
    slices must stand out of the sensor noise (0 at noise level, 1 a few noise
    units above), and must be a good share of the peak itself (0 below 30 %,
    1 above 70 %), since compressed images hide their noise from the noise
    estimate while their flat areas still have flat focus curves.
    """
    if n < 2:
        return _has_texture(peak)
    others = (total - peak) / (n - 1)
    excess = peak - others
    snr = np.clip((excess / np.float32(max(noise, 1e-12)) - 1) / 4, 0, 1)
    share = np.clip((excess / np.maximum(peak, 1e-12) - 0.3) / 0.4, 0, 1)
    return (snr * share).astype(np.float32)
