"""Split a frame into overlapping tiles, so that frames larger than memory can be stacked.

Every stage of the stacking pass is local: a pixel's result depends only on
pixels within a known radius (the focus window, the pyramid's reach). A tile
that reads that much overlap around the pixels it delivers therefore gives
them exactly as the whole frame would, and the running state of a stack is
held for one tile at a time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["Tile", "available_memory", "choose_tile_side", "relative", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """One tile of a frame.

    Attributes
    ----------
    core : tuple of slice
        Rows and columns of the frame this tile delivers.
    padded : tuple of slice
        Rows and columns it reads: the core and the overlap around it,
        clipped to the frame.
    """

    core: tuple[slice, slice]
    padded: tuple[slice, slice]

    @property
    def inner(self) -> tuple[slice, slice]:
        """The core, in coordinates of the padded tile."""
        return relative(self.core, self.padded)

    @property
    def shape(self) -> tuple[int, int]:
        """Rows and columns of the padded tile."""
        return tuple(p.stop - p.start for p in self.padded)


def relative(part: tuple[slice, ...], whole: tuple[slice, ...]) -> tuple[slice, ...]:
    """The slices `part` of a frame, in coordinates of its window `whole` (which holds them).

    Examples
    --------
    >>> relative((slice(5, 9), slice(2, 4)), (slice(3, 10), slice(0, 6)))
    (slice(2, 6, None), slice(2, 4, None))
    """
    pairs = zip(part, whole, strict=True)
    return tuple(slice(p.start - w.start, p.stop - w.start) for p, w in pairs)


def tile_grid(shape: tuple[int, ...], side: int | None, margin: int, step: int = 1) -> list[Tile]:
    """Cover a frame with square tiles that overlap by `margin`.

    Parameters
    ----------
    shape : tuple of int
        Frame shape, rows and columns first.
    side : int or None
        Side of a tile's core in pixels, rounded down to a multiple of `step`
        (at least one step); None for one tile covering the frame.
    margin : int
        Overlap read around each core.
    step : int, optional
        Cores start at multiples of this (block or pyramid grids must line up).

    Returns
    -------
    tiles : list of Tile
        Row-major; the cores partition the frame.

    Examples
    --------
    >>> [t.core for t in tile_grid((10, 4), 6, 2)]
    [(slice(0, 6, None), slice(0, 4, None)), (slice(6, 10, None), slice(0, 4, None))]
    >>> tile_grid((10, 4), 6, 2)[1].padded
    (slice(4, 10, None), slice(0, 4, None))
    """
    rows, cols = (int(s) for s in shape[:2])
    if step < 1 or margin < 0:
        raise ValueError(f"step must be >= 1 and margin >= 0, got {step} and {margin}")
    if side is None:
        return [Tile((slice(0, rows), slice(0, cols)), (slice(0, rows), slice(0, cols)))]
    if side < 1:
        raise ValueError(f"tile side must be a positive number of pixels, got {side}")
    side = max(step, side // step * step)
    tiles = []
    for r in range(0, rows, side):
        for c in range(0, cols, side):
            core = (slice(r, min(r + side, rows)), slice(c, min(c + side, cols)))
            padded = tuple(
                slice(max(0, s.start - margin), min(n, s.stop + margin))
                for s, n in zip(core, (rows, cols), strict=True)
            )
            tiles.append(Tile(core, padded))
    return tiles


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping, or None if unknown.

    Returns
    -------
    available : int or None
        Linux's ``MemAvailable`` where there is one, else the physical memory.
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def choose_tile_side(
    shape: tuple[int, ...], bytes_per_pixel: float, margin: int, budget: int | None
) -> int | None:
    """Largest tile whose running state fits a memory budget.

    Parameters
    ----------
    shape : tuple of int
        Frame shape, rows and columns first.
    bytes_per_pixel : float
        Memory the stacking pass needs per pixel of a (padded) tile.
    margin : int
        Overlap around each tile.
    budget : int or None
        Bytes the pass may use; None for no limit.

    Returns
    -------
    side : int or None
        Tile side in pixels (at least 256), or None when the whole frame fits.

    Examples
    --------
    >>> choose_tile_side((1000, 1000), 100, 10, 10**9) is None
    True
    >>> choose_tile_side((10000, 10000), 100, 10, 10**9)
    3142
    """
    pixels = int(shape[0]) * int(shape[1])
    if budget is None or pixels * bytes_per_pixel <= budget:
        return None
    return max(256, int(math.sqrt(budget / bytes_per_pixel)) - 2 * margin)
