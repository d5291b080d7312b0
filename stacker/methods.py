"""The running state of each stacking method: what every slice folds into, and the outputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from ._dtype import convert_dtype
from ._opencv import gaussian
from .composite import HardPick
from .pyramid import PyramidFusion, pyramid_levels
from .resolve import resolve_depth
from .select import ArgmaxSelector, PeakTracker, peak_confidence, subslice_peak

__all__ = ["METHODS", "STATES", "Frames", "MethodState"]

METHODS = ("depthmap", "pyramid", "argmax")


@dataclass
class Frames:
    """A method's output frames, for one tile or, pasted together, the whole frame.

    Attributes
    ----------
    depth : (M, N) ndarray of float32
        Depth in slice units.
    sharpness : (M, N) ndarray of float32
        Focus value at the depth.
    confidence : (M, N) ndarray of float32
        How much the depth can be trusted, in [0, 1].
    composite : (M, N[, 3]) ndarray, optional
        The all-in-focus image; None from a two-pass method, whose composite
        comes from the second pass.
    coarse, strength : (M, N) ndarray of float32, optional
        A two-pass method's depth and peak focus over the wider window, for
        :meth:`MethodState.finish`; None once it has used them.
    """

    depth: np.ndarray
    sharpness: np.ndarray
    confidence: np.ndarray
    composite: np.ndarray | None = None
    coarse: np.ndarray | None = None
    strength: np.ndarray | None = None

    def present(self) -> dict[str, np.ndarray]:
        """The frames that are there, by field name."""
        named = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: frame for name, frame in named if frame is not None}


class MethodState(ABC):
    """What every method's running state provides.

    The stacking pass makes one state per tile, calls ``prepare`` in worker
    threads on one slice at a time and ``update``, in stack order, to fold
    the prepared slice into the running result, then ``result`` for the
    tile's :class:`Frames`. The class also tells the plan what the method
    needs: ``measure``, its default focus measure; ``levels``, ``grid`` and
    ``reach``, its pyramid levels, the grid its tiles must start on and the
    overlap they need beyond the focus window; ``bytes_per_pixel``, its
    memory per pixel of a tile. A ``two_pass`` method's depth is finished
    over the whole frame once the tiles are done (``finish``) and its
    composite blended from the slices around that depth in a second pass.
    """

    two_pass: ClassVar[bool] = False
    measure: ClassVar[str] = "mean-std"

    @abstractmethod
    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        """An empty state for a tile of `shape` (rows, columns[, channels]) and `dtype`."""

    @staticmethod
    def levels(shape: tuple[int, ...], tiled: bool) -> int:
        """Pyramid levels for a frame of `shape` (0: the method has no pyramid)."""
        return 0

    @staticmethod
    def grid(levels: int) -> int:
        """Tiles' cores must start at multiples of this."""
        return 1

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        """Overlap a tile needs beyond the focus window, in pixels."""
        return 0

    @staticmethod
    @abstractmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        """Memory of the stacking pass per pixel of a tile of a `shape` stack."""

    def prepare(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        """The slice's part of the work that can run in a worker thread."""
        return image, focus

    @abstractmethod
    def update(self, prepared: tuple) -> None:
        """Fold a prepared slice into the running result, in stack order."""

    @abstractmethod
    def result(self, noise: float, value_range: tuple[float, float] | None) -> Frames:
        """The tile's frames, given the stack's noise level and value range."""

    @staticmethod
    def finish(frames: Frames, *, sigma: float, slices: int) -> None:
        """Finish the whole frame's depth in place, once every tile is stacked."""
        return  # a one-pass method's tiles give its final depth


class ArgmaxState(MethodState):
    """Hard pick of each pixel's sharpest slice (the reference, on the reference measure)."""

    measure = "variance"

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.selector = ArgmaxSelector(shape[:2])
        self.pick = HardPick(shape, dtype)

    @staticmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        # index, value, focus per slice in flight; pick and slices in flight
        return 4 * (2 + 2 * threads) + _pixel_bytes(shape, dtype) * (2 + 2 * threads)

    def update(self, prepared: tuple) -> None:
        image, focus = prepared
        self.pick.update(image, self.selector.update(focus))

    def result(self, noise: float, value_range: tuple[float, float] | None) -> Frames:
        return _with_argmax_depth(self.pick.image, self.selector)


class PyramidState(MethodState):
    """Laplacian-pyramid fusion; depth from the argmax."""

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.selector = ArgmaxSelector(shape[:2])
        self.fusion = PyramidFusion(shape, levels or None)
        self.dtype = dtype

    @staticmethod
    def levels(shape: tuple[int, ...], tiled: bool) -> int:
        levels = pyramid_levels(shape)
        return min(levels, _TILED_LEVELS) if tiled else levels

    @staticmethod
    def grid(levels: int) -> int:
        # Tiles must start on the coarsest level's grid to decompose as the whole frame does.
        return 2**levels

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        # Analysis, selection by the reduced focus and synthesis each reach a
        # kernel radius (2 px) of every level. Two pixels of the coarsest level
        # gave tiles equal to the whole frame to the bit; four leave room.
        return 4 * 2**levels

    @staticmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        channels = shape[2] if len(shape) == 3 else 1
        # Fused and in-flight pyramids (4/3 of a frame each) of float32 channels and
        # energies, with the temporaries of building one.
        return (4 * channels + 4) * 4 / 3 * (2 + threads) + 8 * 4 * channels

    def prepare(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        return focus, self.fusion.decompose(convert_dtype(image, "float32"), focus)

    def update(self, prepared: tuple) -> None:
        focus, decomposed = prepared
        self.selector.update(focus)
        self.fusion.add(decomposed)

    def result(self, noise: float, value_range: tuple[float, float] | None) -> Frames:
        fused = self.fusion.result(value_range)
        del self.fusion
        composite = (
            fused.astype(self.dtype) if self.dtype.kind == "f" else convert_dtype(fused, self.dtype)
        )
        return _with_argmax_depth(composite, self.selector)


class DepthMapState(MethodState):
    """Depth from focus at two scales, then (second pass) slices blended at that depth.

    Two running peak trackers: one on the focus measure, one on the measure
    averaged over a wider window (``_SPREAD * sigma``). Beside a strong edge,
    a defocused slice's spill has more fine-scale focus than the in-focus
    smooth surface, so the fine argmax picks the blurred slice there; summed
    over the wider window, the edge's own in-focus response outweighs its
    spill. :func:`stacker.resolve.resolve_depth` makes one depth map of the
    two over the whole frame, and the composite is blended from the slices
    on either side of it in a second pass.
    """

    two_pass = True

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.fine = PeakTracker(shape[:2], total=False)
        self.coarse = PeakTracker(shape[:2])
        self.spread = _SPREAD * sigma

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        return int(4.0 * _SPREAD * sigma + 0.5)  # the wider window's Gaussian: 4 sigmas

    @staticmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        # Two trackers (index, value, before, after, previous; the coarse one's total)
        # and the finishing steps' temporaries, float32; two focus maps and a slice
        # per slice in flight.
        return 4 * (15 + 3 * threads) + _pixel_bytes(shape, dtype) * (1 + threads)

    def prepare(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        return focus, gaussian(focus, self.spread)

    def update(self, prepared: tuple) -> None:
        focus, wide = prepared
        self.fine.update(focus)
        self.coarse.update(wide)

    def result(self, noise: float, value_range: tuple[float, float] | None) -> Frames:
        c = self.coarse
        fine, coarse = _peak_depth(self.fine), _peak_depth(c)
        confidence = peak_confidence(c.value, c.total, c.count, noise)
        c.total = None
        return Frames(fine, self.fine.value, confidence, coarse=coarse, strength=c.value)

    @staticmethod
    def finish(frames: Frames, *, sigma: float, slices: int) -> None:
        """One depth map from the two scales (:func:`stacker.resolve.resolve_depth`).

        `frames` lets go of its coarse and strength frames before the call, so
        that it can free them as soon as they have served.
        """
        frames.depth, frames.confidence = resolve_depth(
            frames.depth,
            _take(frames, "coarse"),
            frames.confidence,
            fine_peak=frames.sharpness,
            coarse_peak=_take(frames, "strength"),
            sigma=sigma,
        )
        np.clip(frames.depth, 0, slices - 1, out=frames.depth)


# The wider focus window, in units of sigma: wide enough that an edge's in-focus
# response outweighs its defocused spill a few pixels away, narrow enough to follow
# steep surfaces.
_SPREAD = 1.5

# Pyramid levels when tiling: the residual at 1/64 scale is plenty for fusion, and
# keeps the overlap a tile needs (a few pixels per pixel of that scale) bounded.
_TILED_LEVELS = 6


def _take(frames: Frames, name: str) -> np.ndarray:
    """Frame `name`, no longer held by `frames`."""
    frame = getattr(frames, name)
    setattr(frames, name, None)
    return frame


def _peak_depth(tracker: PeakTracker) -> np.ndarray:
    """A tracker's sub-slice depth: its argmax plus the fitted peak's offset.

    Frees the tracker's neighbour frames, which only this needs.
    """
    tracker.release()
    depth = subslice_peak(tracker.before, tracker.value, tracker.after)[0]
    tracker.before = tracker.after = None
    depth += tracker.index
    return depth


def _pixel_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize


STATES: dict[str, type[MethodState]] = {
    "depthmap": DepthMapState,
    "pyramid": PyramidState,
    "argmax": ArgmaxState,
}


def _with_argmax_depth(composite: np.ndarray, selector: ArgmaxSelector) -> Frames:
    """Composite, whole-slice depth, sharpness and a textured/flat confidence."""
    value = selector.value
    depth = selector.index.astype(np.float32)
    return Frames(depth, value, _has_texture(value), composite=composite)


def _has_texture(value: np.ndarray) -> np.ndarray:
    return (value > 0).astype(np.float32)
