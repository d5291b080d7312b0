import numpy as np
import pytest

from stacker.composite import HardPick, composite_from_index


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
