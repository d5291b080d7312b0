"""The running state of each stacking method: what every slice folds into, and the outputs."""

from __future__ import annotations

import numpy as np

from ._dtype import convert_dtype
from ._opencv import gaussian
from .composite import HardPick
from .pyramid import PyramidFusion
from .select import ArgmaxSelector, PeakTracker, subslice_peak

__all__ = ["METHODS", "STATES"]

METHODS = ("depthmap", "pyramid", "argmax")


class _State:
    """What every method's running state provides.

    A ``prepare`` step, run in worker threads on one slice at a time, and an
    ``update`` step, run in stack order, that folds the prepared slice into
    the running result; ``result`` gives a dict of frames: ``depth``,
    ``sharpness``, ``confidence`` and, unless the method is ``two_pass``,
    ``composite``. ``reach`` is the overlap its tiles need beyond the focus
    window, ``bytes_per_pixel`` its memory per pixel of a tile; a
    ``two_pass`` method's depth is finished over the whole frame once the
    tiles are done (:func:`stacker.select.resolve_depth`, from its
    ``coarse`` and ``strength`` frames too) and its composite blended from the slices around
    that depth in a second pass; ``measure`` names its default focus measure.
    """

    two_pass = False
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

    def result(self, noise: float, value_range: tuple[float, float] | None) -> dict:
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

    def result(self, noise: float, value_range: tuple[float, float] | None) -> dict:
        fused = self.fusion.result(value_range)
        del self.fusion
        composite = (
            fused.astype(self.dtype) if self.dtype.kind == "f" else convert_dtype(fused, self.dtype)
        )
        return _with_argmax_depth(composite, self.selector)


class DepthMapState(_State):
    """Depth from focus at two scales, then (second pass) slices blended at that depth.

    Two running peak trackers: one on the focus measure, one on the measure
    averaged over a wider window (``_SPREAD * sigma``). Beside a strong edge,
    a defocused slice's spill has more fine-scale focus than the in-focus
    smooth surface, so the fine argmax picks the blurred slice there; summed
    over the wider window, the edge's own in-focus response outweighs its
    spill. :func:`stacker.select.resolve_depth` makes one depth map of the
    two over the whole frame, and the composite is blended from the slices
    on either side of it in a second pass.
    """

    two_pass = True

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, levels: int = 0, sigma: float = 2.0
    ):
        self.fine = PeakTracker(shape[:2])
        self.coarse = PeakTracker(shape[:2])
        self.spread = _SPREAD * sigma

    @staticmethod
    def reach(levels: int, sigma: float) -> int:
        return int(4.0 * _SPREAD * sigma + 0.5)  # the wider window's Gaussian: 4 sigmas

    @staticmethod
    def bytes_per_pixel(shape: tuple[int, ...], dtype: np.dtype, threads: int) -> float:
        # Two trackers (index, value, before, after, total, previous) and the finishing
        # steps' temporaries, float32; two focus maps and a slice per slice in flight.
        return 4 * (16 + 3 * threads) + _pixel_bytes(shape, dtype) * (1 + threads)

    def prepare(self, image: np.ndarray, focus: np.ndarray) -> tuple:
        return focus, gaussian(focus, self.spread)

    def update(self, prepared: tuple) -> None:
        focus, wide = prepared
        self.fine.update(focus)
        self.coarse.update(wide)

    def result(self, noise: float, value_range: tuple[float, float] | None) -> dict:
        c = self.coarse
        fine, coarse = _peak_depth(self.fine), _peak_depth(c)
        confidence = _peak_confidence(c.value, c.total, c.count, noise)
        c.total = self.fine.total = None
        return {
            "depth": fine,
            "coarse": coarse,
            "sharpness": self.fine.value,
            "strength": c.value,
            "confidence": confidence,
        }


# The wider focus window, in units of sigma: wide enough that an edge's in-focus
# response outweighs its defocused spill a few pixels away, narrow enough to follow
# steep surfaces.
_SPREAD = 1.5


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


STATES = {"depthmap": DepthMapState, "pyramid": PyramidState, "argmax": ArgmaxState}


def _with_argmax_depth(composite: np.ndarray, selector: ArgmaxSelector) -> dict:
    """Composite, whole-slice depth, sharpness and a textured/flat confidence."""
    value = selector.value
    return {
        "composite": composite,
        "depth": selector.index.astype(np.float32),
        "sharpness": value,
        "confidence": _has_texture(value),
    }


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
