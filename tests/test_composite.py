import numpy as np
import pytest

from stacker.composite import (
    HardPick,
    PeakNeighbours,
    add_depth_weights,
    composite_from_index,
    neighbour_weights,
)
from stacker.select import PeakTracker


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_composite_from_index_picks_named_slice(dtype, channels):
    rng = np.random.default_rng(0)
    shape = (4, 6, 5) if channels is None else (4, 6, 5, channels)
    stack = (rng.random(shape) * 200).astype(dtype)
    index = rng.integers(0, 4, (6, 5))
    out = composite_from_index(stack, index)
    assert out.dtype == dtype and out.shape == shape[1:]
    r, c = 2, 3
    np.testing.assert_array_equal(out[r, c], stack[index[r, c], r, c])


def test_hard_pick_matches_composite_from_index():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    index = rng.integers(0, 5, (8, 8))
    pick = HardPick((8, 8, 3), np.uint8)
    for k, plane in enumerate(stack):
        pick.update(plane, index == k)
    np.testing.assert_array_equal(pick.image, composite_from_index(stack, index))


@pytest.mark.parametrize("index", [np.full((2, 2), 3), np.full((2, 2), -1), np.zeros((3, 2))])
def test_composite_from_index_validates(index):
    with pytest.raises(ValueError):
        composite_from_index(np.zeros((3, 2, 2)), index)


def test_peak_neighbours_keep_slices_around_the_peak():
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 255, (6, 5, 4, 3), dtype=np.uint8)
    focus = rng.random((6, 5, 4)).astype(np.float32)
    tracker, keep = PeakTracker((5, 4)), PeakNeighbours((5, 4, 3), np.uint8)
    for image, plane in zip(stack, focus, strict=True):
        keep.update(image, *tracker.update(plane))
    index = focus.argmax(axis=0)
    np.testing.assert_array_equal(keep.peak, composite_from_index(stack, index))
    np.testing.assert_array_equal(
        keep.before, composite_from_index(stack, np.maximum(index - 1, 0))
    )
    np.testing.assert_array_equal(keep.after, composite_from_index(stack, np.minimum(index + 1, 5)))


def test_neighbour_weights_pick_clear_peaks_and_average_flat_curves():
    noise = 0.01
    clear = neighbour_weights(np.array([[0.1]]), np.array([[1.0]]), np.array([[0.2]]), noise)
    flat = neighbour_weights(np.array([[1.0]]), np.array([[1.0]]), np.array([[1.0]]), noise)
    assert clear[1, 0, 0] > 0.95
    np.testing.assert_allclose(flat[:, 0, 0], 1 / 3, rtol=1e-6)


def test_blend_keeps_dtype_and_range():
    keep = PeakNeighbours((2, 2), np.uint16)
    keep.before[...], keep.peak[...], keep.after[...] = 0, 65535, 65535
    out = keep.blend(np.full((3, 2, 2), 1 / 3, np.float32))
    assert out.dtype == np.uint16 and (out == 43690).all()


def _flat_weights(shape):
    weights = np.zeros((3, *shape), np.float32)
    weights[1] = 1
    return weights


def test_depth_weights_overrule_an_outlier_among_confident_neighbours():
    shape = (21, 21)
    depth = np.full(shape, 3.0, np.float32)
    index = np.full(shape, 3)
    depth[10, 10], index[10, 10] = 4.2, 4  # its own argmax is one slice off
    none = np.zeros(shape, bool)
    weights = add_depth_weights(_flat_weights(shape), depth, index, np.ones(shape), (none, none))
    # The outlier leans to the slice before its argmax, slice 3; the others stay.
    assert weights[0, 10, 10] > 0.45 and weights[0, 10, 10] > weights[2, 10, 10]
    np.testing.assert_allclose(weights[:, 0, 0], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=0), 1, rtol=1e-6)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5])
def test_depth_weights_interpolate_fractional_depth(fraction):
    shape = (9, 9)
    depth = np.full(shape, 2 + fraction, np.float32)
    none = np.zeros(shape, bool)
    weights = add_depth_weights(
        _flat_weights(shape), depth, np.full(shape, 2), np.ones(shape), (none, none)
    )
    # (0, 1, 0) plus the linear weights (0, 1 - f, f), normalised.
    np.testing.assert_allclose(weights[:, 4, 4], [0, (2 - fraction) / 2, fraction / 2], atol=1e-5)


def test_depth_weights_never_use_a_missing_neighbour():
    shape = (9, 9)
    depth = np.full(shape, 0.0, np.float32)
    depth[4, 4] = 0.4
    last = np.ones(shape, bool)
    weights = add_depth_weights(
        _flat_weights(shape), depth + 1, np.ones(shape, int), np.ones(shape), (last, last)
    )
    np.testing.assert_array_equal(weights[[0, 2]], 0)
