"""The running state of each stacking method: what every slice folds into, and the outputs."""

from __future__ import annotations

import numpy as np

from .composite import HardPick, PeakNeighbours, add_depth_weights, neighbour_weights
from .io import convert_dtype
from .pyramid import PyramidFusion
from .select import ArgmaxSelector, PeakTracker, subslice_peak

__all__ = ["METHODS", "STATES"]

METHODS = ("depthmap", "pyramid", "argmax")


class _State:
    """What every method's running state provides.

    A ``prepare`` step, run in worker threads on one slice at a time, and an
    ``update`` step, run in stack order, that folds the prepared slice into
    the running result; ``result`` gives the composite, depth, sharpness and
    confidence. ``reach`` is the overlap its tiles need beyond the focus
    window, ``bytes_per_pixel`` its memory per pixel of a tile, and
    ``regularize`` whether the depth map is regularised over the whole frame
    once the tiles are done; ``measure`` names its default focus measure.
    """

    regularize = False
    measure = "mean-std"

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        return 0

    def prepare(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        return image, focus


class ArgmaxState(_State):
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

    def result(self, noise: float, value_range: tuple[float, float] | None) -> list[np.ndarray]:
        return _with_argmax_depth(self.pick.image, self.selector)


class PyramidState(_State):
    """Laplacian-pyramid fusion; depth from the argmax."""

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.selector = ArgmaxSelector(shape[:2])
        self.fusion = PyramidFusion(shape, levels or None)
        self.dtype = dtype

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

    def result(self, noise: float, value_range: tuple[float, float] | None) -> list[np.ndarray]:
        fused = self.fusion.result(value_range)
        del self.fusion
        composite = (
            fused.astype(self.dtype) if self.dtype.kind == "f" else convert_dtype(fused, self.dtype)
        )
        return _with_argmax_depth(composite, self.selector)


class DepthMapState(_State):
    """Sub-slice depth, regularised; composite blended around the focus peak."""

    regularize = True

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.tracker = PeakTracker(shape[:2])
        self.keep = PeakNeighbours(shape, dtype)
        self.smooth = _BLEND_SMOOTH * sigma

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        return int(4.0 * _BLEND_SMOOTH * sigma + 0.5)  # scipy's Gaussian: 4 sigmas

    @staticmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        # Tracker frames and the finishing steps' temporaries, float32; three kept
        # slices and the previous one, plus the slices in flight.
        return 4 * (10 + 2 * threads) + _pixel_bytes(shape, dtype) * (4 + 2 * threads)

    def update(self, prepared: tuple) -> None:
        image, focus = prepared
        self.keep.update(image, *self.tracker.update(focus))

    def result(self, noise: float, value_range: tuple[float, float] | None) -> list[np.ndarray]:
        # Each step lets go of the frames it no longer needs: on large images
        # the finishing steps, not the stream, set the peak memory.
        t, keep = self.tracker, self.keep
        t.release()
        keep.release()
        depth = subslice_peak(t.before, t.value, t.after)[0]
        weights = neighbour_weights(t.before, t.value, t.after, noise)
        missing = np.isnan(t.before), np.isnan(t.after)
        t.before = t.after = None
        confidence = _peak_confidence(t.value, t.total, t.count, noise)
        t.total = None
        depth += t.index
        add_depth_weights(weights, depth, t.index, confidence, missing, sigma=self.smooth)
        composite = keep.blend(weights)
        del self.keep, keep, weights
        return [composite, depth, t.value, confidence]


# Blending follows the sub-slice depth smoothed over this many focus windows:
# enough to overrule single-pixel outliers of the argmax, little enough to
# keep depth steps.
_BLEND_SMOOTH = 0.75


def _pixel_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize


STATES = {"depthmap": DepthMapState, "pyramid": PyramidState, "argmax": ArgmaxState}


def _with_argmax_depth(composite: np.ndarray, selector: ArgmaxSelector) -> list[np.ndarray]:
    """Composite, whole-slice depth, sharpness and a textured/flat confidence."""
    value = selector.value
    return [composite, selector.index.astype(np.float32), value, _has_texture(value)]


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
