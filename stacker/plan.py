"""Plan a merge before reading pixels: reference, registration, frame, tiles.

:func:`plan_merge` decides everything the passes over the slices need to
know in advance, asking the stacking method (:class:`stacker.methods.MethodState`)
for what only it knows: its memory per pixel, its pyramid levels, the grid
its tiles must start on and the overlap they need.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .align import MIN_MATCH, common_crop, estimate_stack_transforms
from .focus import focus_radius
from .io import Stack, StackError, StackWarning
from .methods import MethodState
from .tiles import Tile, available_memory, choose_tile_side, relative, tile_grid

__all__ = ["ALIGN_FAIL", "MergePlan", "choose_reference", "plan_merge", "register"]

ALIGN_FAIL = ("keep", "drop", "error")


@dataclass(frozen=True)
class MergePlan:
    """What a merge will do, decided before the stacking pass.

    Attributes
    ----------
    method : type of MethodState
        The stacking method's running state.
    reference : int
        Index of the slice whose frame the outputs are in.
    matrices : tuple of (3, 3) ndarray or None
        Per input slice, the matrix mapping reference-frame ``(row, col, 1)``
        to its pixels; None for a slice left out.
    aligned : bool
        Whether the transforms were estimated, in a pass over the slices of its own.
    frame : tuple of slice
        Rows and columns of the reference frame the outputs cover.
    inner : tuple of slice
        The part of `frame` every kept slice covers, relative to `frame`.
    block : int
        Side of the blocks brightness gains are estimated on.
    levels : int
        Pyramid levels of the method (0 without a pyramid).
    margin : int
        Overlap each tile reads around its core (0 for one tile).
    tiles : tuple of Tile
        The tiles the frame is stacked in, row-major.
    """

    method: type[MethodState]
    reference: int
    matrices: tuple[np.ndarray | None, ...]
    aligned: bool
    frame: tuple[slice, slice]
    inner: tuple[slice, slice]
    block: int
    levels: int
    margin: int
    tiles: tuple[Tile, ...]

    @property
    def keep(self) -> list[int]:
        """Indices of the slices stacked, in stack order."""
        return [k for k, m in enumerate(self.matrices) if m is not None]

    @property
    def shape(self) -> tuple[int, int]:
        """Rows and columns of the outputs."""
        return _extent(self.frame)

    @property
    def registered(self) -> int:
        """Slices the registration pass read."""
        return len(self.matrices) if self.aligned else 0

    @property
    def work(self) -> int:
        """Slices read by all the passes, as progress counts them."""
        return _work(len(self.matrices), len(self.keep), self.aligned, len(self.tiles), self.method)


def plan_merge(
    stack: Stack,
    method: type[MethodState],
    *,
    sigma: float,
    measure: str,
    align: str,
    align_reference: int | None,
    transforms: Sequence[np.ndarray] | None,
    crop: bool,
    on_align_fail: str,
    tile_size: int | None,
    threads: int,
    progress: Callable[..., None] | None,
) -> MergePlan:
    """Register the stack and lay out the output frame and its tiles.

    Parameters
    ----------
    stack : Stack
        The opened stack.
    method : type of MethodState
        The stacking method's running state, asked for its memory per pixel,
        pyramid levels, tile grid and overlap.
    sigma, measure, align, align_reference, transforms, crop, on_align_fail, tile_size, threads
        As for :func:`stacker.merge`, checked but for `align_reference` and `transforms`.
    progress : callable or None
        Called as ``progress(done, total, stage="registering")`` while registering, the only step
        that reads pixels; `total` is guessed from the whole frame's tiles,
        since the crop that sets the real ones is not known yet.

    Returns
    -------
    plan : MergePlan

    Raises
    ------
    ValueError
        If `align_reference` or `transforms` is not valid.
    StackError
        If a slice does not register and `on_align_fail` is ``'error'``.
    """
    n = len(stack)
    reference = choose_reference(n, align_reference)
    aligning = _registers(stack, align, transforms)
    radius = focus_radius(sigma, measure)
    side = _tile_side(stack, method, tile_size, radius, threads)
    guess = _work(n, n, aligning, len(tile_grid(stack.shape, side, 0)), method)
    matrices = register(
        stack,
        model=align,
        reference=reference,
        transforms=transforms,
        on_align_fail=on_align_fail,
        threads=threads,
        progress=None
        if progress is None
        else lambda done, _: progress(done, guess, stage="registering"),
    )
    frame, inner = _frame(stack.shape, matrices, crop)
    block, levels, margin, tiles = _tiles(_extent(frame), method, side, radius, sigma)
    return MergePlan(
        method, reference, tuple(matrices), aligning, frame, inner, block, levels, margin, tiles
    )


def choose_reference(n: int, align_reference: int | None) -> int:
    """The reference slice: `align_reference`, checked, or the middle one.

    Parameters
    ----------
    n : int
        Number of slices.
    align_reference : int or None
        The slice asked for, if any.

    Returns
    -------
    reference : int

    Raises
    ------
    ValueError
        If `align_reference` is not a slice index.

    Examples
    --------
    >>> choose_reference(5, None), choose_reference(5, 0)
    (2, 0)
    """
    reference = n // 2 if align_reference is None else align_reference
    if not 0 <= reference < n:
        raise ValueError(f"align_reference must be a slice index in 0..{n - 1}, got {reference}")
    return reference


def register(
    stack: Stack,
    *,
    model: str,
    reference: int,
    transforms: Sequence[np.ndarray] | None,
    on_align_fail: str,
    threads: int,
    progress: Callable[[int, int], None] | None,
) -> list[np.ndarray | None]:
    """Per slice, the transform to the reference frame; None for a slice left out.

    Parameters
    ----------
    stack : Stack
        The opened stack.
    model : str
        Motion model (see :data:`stacker.align.MODELS`); ``'none'`` for identities.
    reference : int
        Index of the reference slice.
    transforms : sequence of (3, 3) ndarray or None
        Transforms to use instead of estimating them, one per slice.
    on_align_fail : {'keep', 'drop', 'error'}
        What to do with a slice that does not register (see :func:`stacker.merge`);
        each failure is a :class:`StackWarning`.
    threads : int
        Worker threads for registration.
    progress : callable or None
        Called as ``progress(done, n)`` while registering.

    Returns
    -------
    matrices : list of (3, 3) ndarray or None
        Identities for still stacks and frames under 16 pixels; transforms
        that move no pixel by :data:`SNAP_PIXELS` snap to identity.

    Raises
    ------
    ValueError
        If `transforms` is not one (3, 3) matrix per slice.
    StackError
        If a slice does not register and `on_align_fail` is ``'error'``.
    """
    n = len(stack)
    if transforms is not None:
        return _check_transforms(transforms, n)
    if not _registers(stack, model, transforms):
        return [np.eye(3)] * n
    matrices, quality = estimate_stack_transforms(
        _Greys(stack), model=model, reference=reference, threads=threads, progress=progress
    )
    matrices = [_snap(m, stack.shape) for m in matrices]
    return _handle_failures(stack.names, matrices, quality, reference, on_align_fail)


def _registers(stack: Stack, model: str, transforms: Sequence[np.ndarray] | None) -> bool:
    """Whether the slices are to be registered, in a pass of its own."""
    # Registration needs some image to work with; smaller frames are taken as still.
    return transforms is None and model != "none" and len(stack) > 1 and min(stack.shape[:2]) >= 16


def _tile_side(
    stack: Stack, method: type[MethodState], tile_size: int | None, radius: int, threads: int
) -> int | None:
    """Tile side asked for, or the largest whose state fits half the free memory; None: whole."""
    side = tile_size
    if side is None:
        budget = available_memory()
        side = choose_tile_side(
            stack.shape,
            method.bytes_per_pixel(stack.shape, stack.dtype, threads),
            radius,
            None if budget is None else budget // 2,
        )
    return None if side is not None and side >= max(stack.shape[:2]) else side


def _frame(
    shape: tuple[int, ...], matrices: list[np.ndarray | None], crop: bool
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The outputs' frame, and the part of it every kept slice covers (relative to it)."""
    window = common_crop([m for m in matrices if m is not None], shape)
    frame = window if crop else (slice(0, shape[0]), slice(0, shape[1]))
    return frame, relative(window, frame)


def _tiles(
    shape: tuple[int, int],
    method: type[MethodState],
    side: int | None,
    radius: int,
    sigma: float,
) -> tuple[int, int, int, tuple[Tile, ...]]:
    """Gain block side, pyramid levels, tile overlap and tiles of an output frame of `shape`."""
    # Gains are estimated on heavily low-passed images: block means of about
    # 256 px across are plenty, and keep the reference from costing a frame.
    block = max(1, int(np.ceil(max(shape) / 256)))
    tiled = side is not None and side < max(shape)
    levels = method.levels(shape, tiled)
    if not tiled:
        return block, levels, 0, tuple(tile_grid(shape, None, 0))
    grid = method.grid(levels)
    margin = -(-(radius + method.reach(levels, sigma)) // grid) * grid
    # Cores start on the method's grid and on the gains' block grid.
    return block, levels, margin, tuple(tile_grid(shape, side, margin, math.lcm(block, grid)))


def _extent(frame: tuple[slice, slice]) -> tuple[int, int]:
    return tuple(s.stop - s.start for s in frame)


def _work(n: int, kept: int, aligning: bool, tiles: int, method: type[MethodState]) -> int:
    """Slices to process: the alignment pass, the survey when tiling, each tile's passes."""
    return aligning * n + (kept if tiles > 1 else 0) + tiles * kept * (1 + method.two_pass)


class _Greys(Sequence):
    """The stack's slices as registration reads them: grey where that decodes faster."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.stack.grey(index)


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
            raise StackError(f"{message}; on_align_fail=keep or on_align_fail=drop goes on")
        action = "left out" if policy == "drop" else "stacked with its neighbour's transform"
        # Blame merge's caller: through register, plan_merge and merge.
        warnings.warn(f"{message}; {action}", StackWarning, stacklevel=5)
        if policy == "drop":
            out[k] = None
    return out
