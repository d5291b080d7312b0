"""The stacking pipeline: stream slices through focus, selection and compositing."""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._opencv import opencv_threads
from ._parallel import ordered_map
from .align import (
    MIN_MATCH,
    MODELS,
    common_crop,
    estimate_stack_transforms,
)
from .composite import DepthBlend, blend_width
from .focus import check_measure, focus_radius
from .io import Stack, StackError, StackWarning, open_stack
from .methods import METHODS, STATES, Frames, MethodState
from .slices import SliceReader, Survey, noise_window, value_range
from .tiles import Tile, available_memory, choose_tile_side, relative, tile_grid

__all__ = ["ALIGN_FAIL", "METHODS", "MergeResult", "merge"]

ALIGN_FAIL = ("keep", "drop", "error")

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
        Called as ``progress(done, total)`` after each slice of each pass
        (one more when aligning, one more and one per tile when tiling, and
        the depthmap method's second pass).

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
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if align not in MODELS:
        raise ValueError(f"align must be one of {', '.join(MODELS)}; got {align!r}")
    if on_align_fail not in ALIGN_FAIL:
        raise ValueError(
            f"on_align_fail must be one of {', '.join(ALIGN_FAIL)}; got {on_align_fail!r}"
        )
    state_class = STATES[method]
    measure = state_class.measure if measure is None else measure
    measure_func = check_measure(measure, sigma)
    threads = (os.cpu_count() or 1) if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 16):
        raise ValueError(f"tile_size must be an int of at least 16 pixels, got {tile_size!r}")
    # OpenCV filters and warps on threads of its own: as many as asked for.
    with opencv_threads(threads):
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
            raise ValueError(
                f"align_reference must be a slice index in 0..{n - 1}, got {reference}"
            )
        # Registration needs some image to work with; smaller frames are taken as still.
        aligning = transforms is None and align != "none" and n > 1 and min(stack.shape[:2]) >= 16
        passes = 2 if aligning else 1
        side = tile_size
        if side is None:
            budget = available_memory()
            side = choose_tile_side(
                stack.shape,
                state_class.bytes_per_pixel(stack.shape, stack.dtype, threads),
                focus_radius(sigma, measure),
                None if budget is None else budget // 2,
            )
        if side is not None and side >= max(stack.shape[:2]):
            side = None
        # Until the crop is known, the whole frame's tiles stand in for the cropped one's.
        total = _work(n, n, passes, len(tile_grid(stack.shape, side, 0)), state_class.two_pass)

        def report(done: int) -> None:
            if progress is not None:
                progress(done, total)

        if transforms is not None:
            matrices = _check_transforms(transforms, n)
        elif aligning:
            matrices, quality = estimate_stack_transforms(
                _Greys(stack),
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
        inner = relative(window, frame)
        # Gains are estimated on heavily low-passed images: block means of about
        # 256 px across are plenty, and keep the reference from costing a frame.
        block = max(1, int(np.ceil(max(out_shape) / 256)))
        tiled = side is not None and side < max(out_shape)
        levels = state_class.levels(out_shape, tiled)
        if tiled:
            # Tiles start on the method's grid and on the gains' block grid.
            grid = state_class.grid(levels)
            reach = focus_radius(sigma, measure) + state_class.reach(levels, sigma)
            margin = -(-reach // grid) * grid
            tiles = tile_grid(out_shape, side, margin, math.lcm(block, grid))
        else:
            tiles = tile_grid(out_shape, None, 0)
        ctx = SliceReader(stack, matrices, frame, block, noise_window(inner), measure_func, sigma)
        total = _work(n, len(keep), passes, len(tiles), state_class.two_pass)

        reference_small = None
        if brightness and n > 1:
            reference_small = ctx.block_means(reference, np.eye(3), tiles)[0]
        surveys: dict[int, Survey] = {}
        steps = itertools.count(1)

        def tick() -> None:
            report((passes - 1) * n + next(steps))

        if len(tiles) > 1:
            # Tiles need each slice's gain, noise and value range before the first
            # tile is stacked: a light pass over the slices finds them.
            jobs = ordered_map(lambda k: ctx.survey(k, tiles, reference_small), keep, threads)
            for k, survey in zip(keep, jobs, strict=True):
                surveys[k] = survey
                tick()
        whole = None
        for tile in tiles:
            state = state_class(
                (*tile.shape, *stack.shape[2:]), stack.dtype, levels=levels, sigma=sigma
            )
            frames = _stack_tile(ctx, state, tile, keep, surveys, reference_small, threads, tick)
            del state
            if len(tiles) == 1:
                whole = frames
                break
            if whole is None:
                empty = {
                    name: np.empty((*out_shape, *array.shape[2:]), array.dtype)
                    for name, array in frames.present().items()
                }
                whole = Frames(**empty)
            for name, array in frames.present().items():
                getattr(whole, name)[tile.core] = array[tile.inner]
            del frames
        state_class.finish(whole, sigma=sigma, slices=len(keep))
        if state_class.two_pass:
            noise = min((surveys[k].noise for k in keep), default=0.0)
            width = blend_width(whole.sharpness, noise, sigma=sigma)
            whole.composite = _blend(
                ctx, whole.depth, width, tiles, keep, surveys, inner, threads, tick
            )
        identity = np.eye(3)
        return MergeResult(
            composite=whole.composite,
            depth=whole.depth,
            sharpness=whole.sharpness,
            confidence=whole.confidence,
            n_slices=len(keep),
            names=[stack.names[k] for k in keep],
            transforms=[identity if m is None else m for m in matrices],
            gains=[surveys[k].gain if k in surveys else 1.0 for k in range(n)],
            crop=frame,
            dropped=[stack.names[k] for k in range(n) if matrices[k] is None],
            tiles=len(tiles),
        )


def _stack_tile(
    ctx: SliceReader,
    state: MethodState,
    tile: Tile,
    keep: list[int],
    surveys: dict,
    reference_small: np.ndarray | None,
    threads: int,
    tick: Callable[[], None],
) -> Frames:
    """Stream the kept slices through one tile's state; its frames.

    Slices missing from `surveys` (a run in one tile) are surveyed on the way and added.
    """
    known = dict(surveys)

    def prepare(k: int) -> tuple:
        image, focus, valid, survey = ctx.prepare(k, tile, known.get(k), reference_small)
        return valid, survey, state.prepare(image, focus)

    # Slices that cover only part of the tile, counted per pixel.
    covered = None
    partial = 0
    for k, (valid, survey, prepared) in zip(keep, ordered_map(prepare, keep, threads), strict=True):
        surveys[k] = survey
        if valid is not None:
            covered = valid.astype(np.uint16) if covered is None else covered + valid
            partial += 1
        state.update(prepared)
        tick()
    noise = min((surveys[k].noise for k in keep), default=0.0)
    # A lone tile's pyramid has seen the whole stack's range itself.
    clip = value_range([known[k] for k in keep], ctx.stack.dtype) if known else None
    frames = state.result(noise, clip)
    if covered is not None:
        frames.confidence[covered < partial] = 0
    return frames


def _blend(
    ctx: SliceReader,
    depth: np.ndarray,
    width: np.ndarray,
    tiles: list[Tile],
    keep: list[int],
    surveys: dict,
    inner: tuple[slice, slice],
    threads: int,
    tick: Callable[[], None],
) -> np.ndarray:
    """The second pass: each tile's composite blended from the slices around its depth.

    `width` is each pixel's reach in slices (see :class:`DepthBlend`).

    A tile inside `inner` (the part every slice covers) reads only the slices
    its depths reach; one beside it reads them all, so that a pixel some
    slices miss takes the nearest slice in depth that has it.
    """
    stack = ctx.stack
    composite = np.empty((*depth.shape, *stack.shape[2:]), stack.dtype)
    for tile in tiles:
        part = depth[tile.core]
        covered = all(
            c.start >= i.start and c.stop <= i.stop for c, i in zip(tile.core, inner, strict=True)
        )
        shape = (*part.shape, *stack.shape[2:])
        blend = DepthBlend(part, shape, len(keep), width=width[tile.core], fill=not covered)
        wanted = blend.slices if covered else range(len(keep))

        def read(j: int, tile: Tile = tile) -> tuple:
            return ctx.corrected(keep[j], tile, surveys[keep[j]])

        for j, (image, valid) in zip(wanted, ordered_map(read, wanted, threads), strict=True):
            blend.add(j, image, valid)
            tick()
        for _ in range(len(keep) - len(wanted)):
            tick()
        composite[tile.core] = blend.result(stack.dtype)
    return composite


class _Greys(Sequence):
    """The stack's slices as registration reads them: grey where that decodes faster."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.stack.grey(index)


def _work(n: int, kept: int, passes: int, tiles: int, blends: bool) -> int:
    """Slices to process: the alignment pass, the survey when tiling, each tile's passes."""
    return (passes - 1) * n + (kept if tiles > 1 else 0) + tiles * kept * (1 + blends)


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
