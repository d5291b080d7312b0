import numpy as np
import pytest
from scipy import ndimage

from stacker._opencv import copy_where, gaussian, separable


@pytest.mark.parametrize("shape", [(40, 5), (37, 64), (129, 200), (3, 300)])
@pytest.mark.parametrize("sigma, truncate", [(1.0, 4.0), (2.0, 3.0), (8.0, 3.0)])
def test_gaussian_equals_scipy(shape, sigma, truncate):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    expected = ndimage.gaussian_filter(image, sigma, truncate=truncate, mode="reflect")
    np.testing.assert_allclose(gaussian(image, sigma, truncate=truncate), expected, atol=1e-6)


def test_gaussian_of_a_part_and_in_place_agree_with_the_whole():
    image = np.random.default_rng(1).random((90, 150)).astype(np.float32)
    whole = gaussian(image, 2.0)
    # Columns 50-149 alone: the same wherever the part's own left edge is not reached.
    part = gaussian(np.ascontiguousarray(image[:, 50:150]), 2.0)
    np.testing.assert_array_equal(part[:, 14:-9], whole[:, 64:141])
    np.testing.assert_array_equal(gaussian(image.copy(), 2.0, out=image), whole)


@pytest.mark.parametrize("width", [7, 63, 64, 65, 130, 301])
@pytest.mark.parametrize("sigma", [0.5, 1.5, 2.0])
def test_any_window_filters_as_the_whole_bit_for_bit(width, sigma):
    # Windows of any width and offset, including the frame's edges: no pixel is
    # computed by a different code path (vector lane or scalar tail) than in the whole.
    image = np.random.default_rng(2).random((60, 400)).astype(np.float32)
    whole = gaussian(image, sigma, truncate=3.0)
    r = int(3.0 * sigma + 0.5)
    for start in (0, 1, 5, 33, 400 - width):
        stop = start + width
        part = gaussian(image[:, start:stop], sigma, truncate=3.0)
        lo = 0 if start == 0 else r
        hi = width if stop == 400 else width - r
        np.testing.assert_array_equal(part[:, lo:hi], whole[:, start + lo : start + hi])


def test_float64_stays_float64():
    image = np.random.default_rng(3).random((20, 30))
    out = gaussian(image, 1.0)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ndimage.gaussian_filter(image, 1.0), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.float32, bool])
@pytest.mark.parametrize("shape", [(30, 41), (30, 41, 3), (30, 41, 5)])
def test_copy_where_is_numpys_masked_copy_of_whole_pixels(dtype, shape):
    rng = np.random.default_rng(5)
    src, dst = ((rng.random(shape) * 200).astype(dtype) for _ in range(2))
    mask = rng.random(shape[:2]) > 0.5
    expected = dst.copy()
    np.copyto(expected, src, where=mask if len(shape) == 2 else mask[..., None])
    copy_where(dst, src, mask)
    np.testing.assert_array_equal(dst, expected)


def test_copy_where_casts_and_broadcasts_as_numpy():
    dst = np.zeros((2, 3), np.float32)
    copy_where(dst, np.ones((2, 3)), np.array([[True, False, True]] * 2))
    copy_where(dst, np.nan, np.array([[False, True, False]] * 2))
    np.testing.assert_array_equal(dst, [[1, np.nan, 1]] * 2)


@pytest.mark.parametrize("mode", ["reflect", "nearest"])
@pytest.mark.parametrize("shape", [(31, 45), (31, 45, 3), (4, 130, 4)])
def test_separable_equals_scipy_per_channel(mode, shape):
    image = np.random.default_rng(6).random(shape).astype(np.float32)
    kernel = np.array([1, 4, 6, 4, 1], np.float32) / 16
    expected = ndimage.correlate1d(image, kernel, axis=0, mode=mode)
    expected = ndimage.correlate1d(expected, kernel, axis=1, mode=mode)
    np.testing.assert_allclose(separable(image, kernel, mode=mode), expected, atol=1e-6)


def test_separable_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of reflect, nearest"):
        separable(np.zeros((4, 4), np.float32), np.ones(3), mode="wrap")
