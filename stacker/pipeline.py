"""The stacking pipeline: check the options, plan the merge, stream the passes, gather the result.

:func:`merge` orchestrates :mod:`stacker.plan` (reference, registration,
frame and tiles) and :mod:`stacker.passes` (the passes over the slices),
with the stacking method's running state from :mod:`stacker.methods`.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._opencv import opencv_threads
from .align import MODELS
from .composite import blend_width
from .focus import check_measure
from .io import Stack, StackWarning, open_stack
from .methods import METHODS, STATES, Frames, MethodState
from .passes import blend_slices, reference_blocks, stack_tiles, survey_slices
from .plan import ALIGN_FAIL, MergePlan, plan_merge
from .slices import SliceReader, Survey, noise_window, stack_noise

__all__ = ["ALIGN_FAIL", "METHODS", "MergeResult", "merge"]

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
    tiles : int
        Number of tiles the frame was stacked in (1: all at once).
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
    tiles: int = 1


def merge(
    inputs: StackInput,
    *,
    method: str = "depthmap",
    sigma: float = 2.0,
    measure: str | None = None,
    order: str = "natural",
    align: str = "similarity",
    align_reference: int | None = None,
    transforms: Sequence[np.ndarray] | None = None,
    crop: bool = True,
    brightness: bool = True,
    on_align_fail: str = "keep",
    tile_size: int | None = None,
    threads: int | None = None,
    progress: Callable[..., None] | None = None,
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
        its peak, at the focus window and at a wider one (so that a strong
        edge's defocused spill does not pass for the focus of the smooth
        area beside it), filled in from confident pixels where focus is
        unreliable; then, in a second pass over the slices, a composite that
        interpolates each pixel between the two slices around its depth.
        ``'pyramid'``: Laplacian-pyramid fusion choosing each level's
        coefficients by the focus measure at that scale. ``'argmax'``: each
        pixel from its sharpest slice (the reference).
    sigma : float, optional
        Focus window (Gaussian standard deviation) in pixels.
    measure : str, optional
        Focus measure name (see :data:`stacker.focus.FOCUS_MEASURES`). Default:
        the reference ``'variance'`` for ``'argmax'``, and ``'mean-std'``,
        which keeps depth edges tighter, for the other methods.
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
    tile_size : int, optional
        Stack the frame in square tiles of this many pixels a side, one at a
        time, each reading the overlap its filters need, so that the result
        equals the untiled one (to rounding) while the running state is one
        tile's. Default: the whole frame at once when its state fits in half
        of the available memory, else the largest tiles that do. Tiles read
        every slice once per tile (uncompressed TIFFs only the tile's part);
        the pyramid method then uses at most 6 levels.
    threads : int, optional
        Worker threads that decode, warp and measure upcoming slices while the
        running result takes the current one, and OpenCV's threads within
        each filter and warp (default: all cores).
    progress : callable, optional
        Called as ``progress(done, total, stage=stage)`` after each slice of
        each pass (one more when aligning, one more and one per tile when
        tiling, and the depthmap method's second pass); `stage` names the pass:
        ``'registering'``, ``'measuring'`` (the depthmap method's first pass,
        and the survey when tiling) or ``'compositing'``.

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
        `transforms`, `on_align_fail`, `tile_size` or `threads` is not valid.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    >>> blurred = np.full_like(sharp, 128)
    >>> r = merge([blurred, sharp], method="argmax", align="none")
    >>> r.composite.dtype, float(r.depth.mean())
    (dtype('uint8'), 1.0)
    """
    state_class, measure, measure_func, threads = _check_options(
        method, measure, sigma, align, on_align_fail, tile_size, threads
    )
    # OpenCV filters and warps on threads of its own: as many as asked for.
    with opencv_threads(threads):
        stack = open_stack(inputs, order=order)
        if len(stack) == 1:
            warnings.warn(
                f"only one slice ({stack.names[0]}); the composite is that slice",
                StackWarning,
                stacklevel=2,
            )
        plan = plan_merge(
            stack,
            state_class,
            sigma=sigma,
            measure=measure,
            align=align,
            align_reference=align_reference,
            transforms=transforms,
            crop=crop,
            on_align_fail=on_align_fail,
            tile_size=tile_size,
            threads=threads,
            progress=progress,
        )
        reader = SliceReader(
            stack,
            plan.matrices,
            plan.frame,
            plan.block,
            noise_window(plan.inner),
            measure_func,
            sigma,
            grey=state_class.two_pass,
        )
        steps, total = itertools.count(plan.registered + 1), plan.work

        def ticker(stage: str) -> Callable[[], None]:
            def tick() -> None:
                done = next(steps)
                if progress is not None:
                    progress(done, total, stage=stage)

            return tick

        first = ticker("measuring" if state_class.two_pass else "compositing")
        reference_small = reference_blocks(reader, plan) if brightness and len(stack) > 1 else None
        surveys = survey_slices(reader, plan, reference_small, threads, ticker("measuring"))
        frames = stack_tiles(reader, plan, surveys, reference_small, threads, first)
        state_class.finish(frames, sigma=sigma, slices=len(plan.keep))
        if state_class.two_pass:
            noise = stack_noise(surveys, plan.keep)
            width = blend_width(frames.sharpness, noise, sigma=sigma)
            frames.composite = blend_slices(
                reader, plan, frames, width, surveys, threads, ticker("compositing")
            )
        return _result(stack, plan, frames, surveys)


def _check_options(
    method: str,
    measure: str | None,
    sigma: float,
    align: str,
    on_align_fail: str,
    tile_size: int | None,
    threads: int | None,
) -> tuple[type[MethodState], str, Callable, int]:
    """Check :func:`merge`'s options; the method's state, measure name and function, threads."""
    for name, value, allowed in (
        ("method", method, METHODS),
        ("align", align, MODELS),
        ("on_align_fail", on_align_fail, ALIGN_FAIL),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    state_class = STATES[method]
    measure = state_class.measure if measure is None else measure
    measure_func = check_measure(measure, sigma)
    threads = (os.cpu_count() or 1) if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 16):
        raise ValueError(f"tile_size must be an int of at least 16 pixels, got {tile_size!r}")
    return state_class, measure, measure_func, threads


def _result(
    stack: Stack, plan: MergePlan, frames: Frames, surveys: dict[int, Survey]
) -> MergeResult:
    n, keep, identity = len(stack), plan.keep, np.eye(3)
    return MergeResult(
        composite=frames.composite,
        depth=frames.depth,
        sharpness=frames.sharpness,
        confidence=frames.confidence,
        n_slices=len(keep),
        names=[stack.names[k] for k in keep],
        transforms=[identity if m is None else m for m in plan.matrices],
        gains=[surveys[k].gain if k in surveys else 1.0 for k in range(n)],
        crop=plan.frame,
        dropped=[stack.names[k] for k in range(n) if plan.matrices[k] is None],
        tiles=len(plan.tiles),
    )
