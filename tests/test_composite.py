import numpy as np
import pytest

from stacker.composite import HardPick, PeakNeighbours, composite_from_index, neighbour_weights
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
