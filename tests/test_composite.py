import numpy as np
import pytest

import stacker
from stacker.composite import DepthBlend, HardPick, blend_width, composite_from_index


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


def _blend(stack, depth, valid=None):
    blend = DepthBlend(depth, stack.shape[1:], len(stack))
    for k in blend.slices:
        blend.add(k, stack[k], None if valid is None else valid[k])
    return blend.result(stack.dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_depth_blend_at_whole_slices_picks_them(dtype, channels):
    rng = np.random.default_rng(3)
    shape = (5, 6, 4) if channels is None else (5, 6, 4, channels)
    stack = (rng.random(shape) * 200).astype(dtype)
    index = rng.integers(0, 5, (6, 4))
    out = _blend(stack, index.astype(np.float32))
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, composite_from_index(stack, index))


@pytest.mark.parametrize("depth, expected", [(0.25, 25), (1.5, 150), (3.0, 300), (2.9, 290)])
def test_depth_blend_interpolates_between_the_two_nearest_slices(depth, expected):
    stack = (np.arange(4, dtype=np.uint16) * 100)[:, None, None] * np.ones((1, 2, 3), np.uint16)
    out = _blend(stack, np.full((2, 3), depth, np.float32))
    assert (out == expected).all()


def test_depth_blend_reads_only_the_slices_its_depths_reach():
    depth = np.array([[1.2, 2.0], [1.9, 1.5]], np.float32)
    assert list(DepthBlend(depth, (2, 2), 5).slices) == [1, 2]


def test_depth_blend_takes_the_nearest_slice_with_data_where_others_miss_a_pixel():
    stack = np.stack([np.full((1, 2), 10 * (k + 1), np.uint8) for k in range(4)])
    valid = np.ones((4, 1, 2), bool)
    valid[1:3, 0, 0] = False  # pixel 0 is missing from slices 1 and 2
    blend = DepthBlend(np.array([[1.6, 1.6]], np.float32), (1, 2), 4, fill=True)
    for k in range(4):
        blend.add(k, stack[k], None if k == 3 else valid[k])  # slice 3 has every pixel
    # Pixel 0's nearest slice with data is slice 3 (0.4 away, slice 0 is 1.6 away).
    np.testing.assert_array_equal(blend.result(np.uint8), [[40, 26]])


def test_depth_blend_validates_shape():
    with pytest.raises(ValueError, match="depth shape"):
        DepthBlend(np.zeros((2, 2)), (2, 3), 3)


def test_depth_blend_with_a_wider_tent_averages_more_slices():
    stack = (np.arange(7, dtype=np.uint8) * 10)[:, None, None] * np.ones((1, 1, 2), np.uint8)
    depth = np.full((1, 2), 3.0, np.float32)
    blend = DepthBlend(depth, (1, 2), 7, width=np.array([[1.0, 3.0]], np.float32))
    assert list(blend.slices) == [1, 2, 3, 4, 5]
    for k in blend.slices:
        blend.add(k, stack[k])
    # Width 3: slices 1..5 with weights 1/3, 2/3, 1, 2/3, 1/3 (mean 30); width 1: slice 3.
    np.testing.assert_array_equal(blend.result(np.uint8), [[30, 30]])
    noisy = np.random.default_rng(0).normal(30, 5, (7, 1, 2000)).astype(np.float32)
    narrow, wide = (
        DepthBlend(np.full((1, 2000), 3.0, np.float32), (1, 2000), 7, width=np.full((1, 2000), w))
        for w in (1.0, 3.0)
    )
    for k in range(7):
        narrow.add(k, noisy[k])
        wide.add(k, noisy[k])
    # Weights 1/3, 2/3, 1, 2/3, 1/3: the std of their weighted mean is sqrt(19 / 81) of one.
    ratio = narrow.result(np.float32).std() / wide.result(np.float32).std()
    assert abs(ratio - np.sqrt(81 / 19)) < 0.05, ratio


def test_depth_blend_validates_width():
    with pytest.raises(ValueError, match="width"):
        DepthBlend(np.zeros((2, 2)), (2, 2), 3, width=np.full((2, 2), 0.5))


def test_depth_blend_of_float_slices_stays_within_them():
    # Regression (hypothesis): two slices of 3.0 blended at depth 0 gave 3.0000002.
    stack = np.array([[[0, 3, 3], [3, 3, 3], [3, 3, 3]]] * 2, np.float32)
    result = stacker.merge(stack, method="depthmap", brightness=False)
    np.testing.assert_array_equal(result.composite, stack[0])


def test_blend_width_of_a_noise_too_small_for_float32_is_one():
    # Regression (hypothesis): a float stack of values near 1e-45 has a noise
    # that is 0 in float32; the width was 0 / 0.
    width = blend_width(np.zeros((3, 3), np.float32), 1e-50)
    np.testing.assert_array_equal(width, np.ones((3, 3), np.float32))
    # ... and one just above float32's smallest overflowed the division, with a warning.
    width = blend_width(np.full((3, 3), 100, np.float32), 1e-45)
    np.testing.assert_array_equal(width, np.ones((3, 3), np.float32))
