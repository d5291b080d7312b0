"""The passes over the slices: the survey, the stacking pass a tile at a time, the blend.

Each pass streams the kept slices of a :class:`stacker.plan.MergePlan`
through one :class:`stacker.slices.SliceReader`, decoding, warping and
measuring upcoming slices in worker threads while the running state takes
the current one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._parallel import ordered_map
from .composite import DepthBlend
from .methods import Frames, MethodState
from .plan import MergePlan
from .slices import SliceReader, Survey, stack_noise, value_range
from .tiles import Tile

__all__ = ["blend_slices", "reference_blocks", "stack_tiles", "survey_slices"]


def reference_blocks(reader: SliceReader, plan: MergePlan) -> np.ndarray:
    """The reference slice's block means, that the other slices' gains are estimated against.

    Parameters
    ----------
    reader : SliceReader
        How slices are read into the output frame.
    plan : MergePlan
        The merge's plan: its reference slice and tiles.

    Returns
    -------
    small : (M // block, N // block) ndarray of float32
        Block-averaged grey of the reference slice.
    """
    return reader.block_means(plan.reference, np.eye(3), plan.tiles)[0]


def survey_slices(
    reader: SliceReader,
    plan: MergePlan,
    reference_small: np.ndarray | None,
    threads: int,
    tick: Callable[[], None],
) -> dict[int, Survey]:
    """Each kept slice's gain, noise and value range, when the frame has several tiles.

    Tiles need them before the first tile is stacked; a lone tile finds them
    on the way.

    Parameters
    ----------
    reader : SliceReader
        How slices are read into the output frame.
    plan : MergePlan
        The merge's plan: its kept slices and tiles.
    reference_small : ndarray or None
        The reference's block means (:func:`reference_blocks`); None for no
        brightness correction.
    threads : int
        Worker threads reading upcoming slices.
    tick : callable
        Called after each slice.

    Returns
    -------
    surveys : dict of int to Survey
        Per kept slice index; empty for a lone tile.
    """
    surveys: dict[int, Survey] = {}
    if len(plan.tiles) == 1:
        return surveys
    jobs = ordered_map(lambda k: reader.survey(k, plan.tiles, reference_small), plan.keep, threads)
    for k, survey in zip(plan.keep, jobs, strict=True):
        surveys[k] = survey
        tick()
    return surveys


def stack_tiles(
    reader: SliceReader,
    plan: MergePlan,
    surveys: dict[int, Survey],
    reference_small: np.ndarray | None,
    threads: int,
    tick: Callable[[], None],
) -> Frames:
    """The stacking pass: the method's frames over the whole output frame, a tile at a time.

    Parameters
    ----------
    reader : SliceReader
        How slices are read into the output frame.
    plan : MergePlan
        The merge's plan: method, levels, kept slices, tiles.
    surveys : dict of int to Survey
        From :func:`survey_slices`; a lone tile adds each slice's on the way.
    reference_small : ndarray or None
        The reference's block means; None for no brightness correction.
    threads : int
        Worker threads reading upcoming slices.
    tick : callable
        Called after each slice of each tile.

    Returns
    -------
    frames : Frames
        The method's frames, of the plan's output shape.
    """
    shape, dtype = reader.stack.shape, reader.stack.dtype
    whole = None
    for tile in plan.tiles:
        state = plan.method(
            (*tile.shape, *shape[2:]), dtype, levels=plan.levels, sigma=reader.sigma
        )
        frames = _stack_tile(
            reader, state, tile, plan.keep, surveys, reference_small, threads, tick
        )
        del state
        if len(plan.tiles) == 1:
            return frames
        if whole is None:
            empty = {
                name: np.empty((*plan.shape, *array.shape[2:]), array.dtype)
                for name, array in frames.present().items()
            }
            whole = Frames(**empty)
        for name, array in frames.present().items():
            getattr(whole, name)[tile.core] = array[tile.inner]
        del frames
    return whole


def _stack_tile(
    reader: SliceReader,
    state: MethodState,
    tile: Tile,
    keep: list[int],
    surveys: dict[int, Survey],
    reference_small: np.ndarray | None,
    threads: int,
    tick: Callable[[], None],
) -> Frames:
    """Stream the kept slices through one tile's state; its frames.

    Slices missing from `surveys` (a run in one tile) are surveyed on the way and added.
    """
    known = dict(surveys)

    def prepare(k: int) -> tuple:
        image, focus, valid, survey = reader.prepare(k, tile, known.get(k), reference_small)
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
    noise = stack_noise(surveys, keep)
    # A lone tile's pyramid has seen the whole stack's range itself.
    clip = value_range([known[k] for k in keep], reader.stack.dtype) if known else None
    frames = state.result(noise, clip)
    if covered is not None:
        frames.confidence[covered < partial] = 0
    return frames


def blend_slices(
    reader: SliceReader,
    plan: MergePlan,
    frames: Frames,
    width: np.ndarray,
    surveys: dict[int, Survey],
    threads: int,
    tick: Callable[[], None],
) -> np.ndarray:
    """The second pass: each tile's composite blended from the slices around its depth.

    A tile inside the part every slice covers reads only the slices its
    depths reach; one beside it reads them all, so that a pixel some slices
    miss takes the nearest slice in depth that has it.

    Parameters
    ----------
    reader : SliceReader
        How slices are read into the output frame.
    plan : MergePlan
        The merge's plan: kept slices, tiles and the part every slice covers.
    frames : Frames
        The finished frames; their depth is in kept-slice units.
    width : (M, N) ndarray
        Each pixel's reach in slices (see :class:`stacker.composite.DepthBlend`).
    surveys : dict of int to Survey
        Each kept slice's gain.
    threads : int
        Worker threads reading upcoming slices.
    tick : callable
        Called after each slice of each tile, read or not.

    Returns
    -------
    composite : (M, N[, 3]) ndarray
        In the stack's dtype.
    """
    stack, keep, depth = reader.stack, plan.keep, frames.depth
    composite = np.empty((*depth.shape, *stack.shape[2:]), stack.dtype)
    for tile in plan.tiles:
        part = depth[tile.core]
        covered = all(
            c.start >= i.start and c.stop <= i.stop
            for c, i in zip(tile.core, plan.inner, strict=True)
        )
        shape = (*part.shape, *stack.shape[2:])
        blend = DepthBlend(part, shape, len(keep), width=width[tile.core], fill=not covered)
        wanted = blend.slices if covered else range(len(keep))

        def read(j: int, tile: Tile = tile) -> tuple:
            return reader.corrected(keep[j], tile, surveys[keep[j]])

        for j, (image, valid) in zip(wanted, ordered_map(read, wanted, threads), strict=True):
            blend.add(j, image, valid)
            tick()
        for _ in range(len(keep) - len(wanted)):
            tick()
        composite[tile.core] = blend.result(stack.dtype)
    return composite
