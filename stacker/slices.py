"""Read one slice into the output frame: warp, exposure gain, noise level and focus.

The stacking pass and, when the frame is tiled, the survey before it read
slices through one :class:`SliceReader`, so that both see the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._dtype import convert_dtype, round_into
from .align import warp
from .exposure import block_mean, estimate_gain
from .focus import noise_variance, to_gray
from .io import Stack
from .tiles import Tile

__all__ = ["SliceReader", "Survey", "noise_window", "stack_noise", "value_range"]


@dataclass(frozen=True)
class Survey:
    """What a slice contributes beyond its pixels, found before or while stacking it."""

    gain: float
    noise: float
    offset: float  # of its grey image, for the focus measure: the same in every tile
    low: float = np.inf  # value range after the gain (tiled runs only)
    high: float = -np.inf


@dataclass(frozen=True)
class SliceReader:
    """How slices are read, warped and measured; shared by the survey and the stacking pass.

    With `grey`, the survey and the stacking pass read colour JPEGs as their
    luma only (for methods whose stacking pass only measures focus): a
    quarter less to decode, a third of the pixels to warp. :meth:`corrected`
    reads them whole.
    """

    stack: Stack
    matrices: list
    frame: tuple[slice, slice]
    block: int
    noise_window: tuple[slice, slice]
    measure: Callable
    sigma: float
    grey: bool = False

    def warped(self, k: int, matrix: np.ndarray, part: tuple[slice, slice], source=None):
        """Slice `k` warped into `part` of the output frame, and where it has data."""
        source = self.stack.window(k, grey=self.grey) if source is None else source
        origin = (self.frame[0].start + part[0].start, self.frame[1].start + part[1].start)
        shape = (part[0].stop - part[0].start, part[1].stop - part[1].start)
        return warp(source, matrix, output_shape=shape, origin=origin)

    def block_means(self, k: int, matrix: np.ndarray, tiles: list[Tile], source=None) -> tuple:
        """Block-averaged grey, where every pixel of a block has data, and the value range.

        Read a tile at a time; tile cores start on the block grid, so the
        result is the block mean of the whole warped slice.
        """
        source = self.stack.window(k, grey=self.grey) if source is None else source
        rows, cols = (s.stop - s.start for s in self.frame)
        small = np.empty((rows // self.block, cols // self.block), np.float32)
        small_valid = np.empty(small.shape, bool)
        low, high = np.inf, -np.inf
        for tile in tiles:
            image, valid = self.warped(k, matrix, tile.core, source)
            means = block_mean(to_gray(image), self.block)
            part = tuple(
                slice(c.start // self.block, c.start // self.block + m)
                for c, m in zip(tile.core, means.shape, strict=True)
            )
            small[part] = means
            small_valid[part] = _whole_blocks(valid, self.block)
            low, high = min(low, image.min()), max(high, image.max())
        return small, small_valid, low, high

    def survey(self, k: int, tiles: list[Tile], reference_small: np.ndarray | None) -> Survey:
        """Gain, noise and value range of slice `k`, reading it a tile at a time."""
        # One read of the slice serves both (compressed files decode whole).
        source = self.stack.window(k, grey=self.grey)
        small, small_valid, low, high = self.block_means(k, self.matrices[k], tiles, source)
        gain = _gain(reference_small, small, small_valid)
        image, _ = self.warped(k, self.matrices[k], self.noise_window, source)
        gray = to_gray(image)
        if gain != 1.0:
            gray *= np.float32(gain)
            low, high = _apply_gain(np.array([low, high], image.dtype), gain)
        return Survey(gain, _noise(gray), _offset(small), float(low), float(high))

    def corrected(self, k: int, tile: Tile, survey: Survey) -> tuple:
        """Slice `k` warped into `tile`'s core, with its gain: image, where it has data.

        The coverage is None where the slice covers the whole core. The tile is
        warped with its overlap, as :meth:`prepare` does, so that every tile
        sees the pixels the whole frame would.
        """
        image, valid = self.warped(k, self.matrices[k], tile.padded, self.stack.window(k))
        image, valid = image[tile.inner], valid[tile.inner]
        if survey.gain != 1.0:
            image = _apply_gain(image, survey.gain)
        return image, None if valid.all() else valid

    def prepare(
        self, k: int, tile: Tile, survey: Survey | None, reference_small: np.ndarray | None
    ) -> tuple:
        """Slice `k` warped into `tile`, corrected and measured: image, focus, coverage.

        Without a `survey` (the whole frame in one tile), the slice's gain and
        noise are found on the way. Returns the image, its focus measure, where
        it has data (None if everywhere) and the survey.
        """
        image, valid = self.warped(k, self.matrices[k], tile.padded)
        covered = valid.all()
        gray = to_gray(image)
        if survey is None:
            small = block_mean(gray, self.block)
            whole = np.ones(small.shape, bool) if covered else _whole_blocks(valid, self.block)
            gain = _gain(reference_small, small, whole)
            image, gray = _corrected(image, gray, gain)
            survey = Survey(gain, _noise(gray[self.noise_window]), _offset(small))
        else:
            image, gray = _corrected(image, gray, survey.gain)
        offset = survey.offset * survey.gain
        focus = self.measure(gray, sigma=self.sigma, overwrite=True, offset=offset)
        if covered:
            return image, focus, None, survey
        focus[~valid] = -1  # any slice that covers the pixel wins over one that does not
        return image, focus, valid, survey


def _whole_blocks(valid: np.ndarray, block: int) -> np.ndarray:
    return block_mean(valid, block) == 1


def _gain(reference: np.ndarray | None, small: np.ndarray, valid: np.ndarray) -> float:
    if reference is None:
        return 1.0
    gain = estimate_gain(reference, small, valid)
    # Gains this close to 1 are estimation noise; rescaling would only round.
    return gain if abs(gain - 1) > 1e-3 else 1.0


def _corrected(image: np.ndarray, gray: np.ndarray, gain: float) -> tuple[np.ndarray, np.ndarray]:
    if gain != 1.0:
        image = _apply_gain(image, gain)
        gray *= np.float32(gain)
    return image, gray


def _apply_gain(image: np.ndarray, gain: float) -> np.ndarray:
    return round_into(image * np.float32(gain), image.dtype).astype(image.dtype)


def _offset(small: np.ndarray) -> float:
    return float(small.mean(dtype=np.float64)) if small.size else 0.0


def _noise(gray: np.ndarray) -> float:
    return noise_variance(gray) if min(gray.shape) >= 3 else 0.0


# Only the part every slice covers has real pixels (and noise) in it; a central
# piece of it this wide is plenty for a stationary noise level.
_NOISE_SIDE = 1024


def noise_window(inner: tuple[slice, slice]) -> tuple[slice, slice]:
    """The central piece of `inner`, at most _NOISE_SIDE square, where noise is measured."""
    starts = [s.start + max(0, (s.stop - s.start - _NOISE_SIDE) // 2) for s in inner]
    return tuple(slice(a, min(s.stop, a + _NOISE_SIDE)) for a, s in zip(starts, inner, strict=True))


def stack_noise(surveys: dict[int, Survey], keep: list[int]) -> float:
    """The stack's noise variance: the least of its kept slices' (0 without slices)."""
    return min((surveys[k].noise for k in keep), default=0.0)


def value_range(surveys: list[Survey], dtype: np.dtype) -> tuple[float, float] | None:
    """The stack's value range as the pyramid sees it (floats, integers scaled to [0, 1])."""
    low, high = min(s.low for s in surveys), max(s.high for s in surveys)
    if not np.isfinite([low, high]).all():
        return None
    scaled = convert_dtype(np.array([low, high], dtype), "float32")
    return float(scaled[0]), float(scaled[1])
