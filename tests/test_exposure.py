"""Exposure: the brightness gain between slices, and the block means it is measured on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import focused

from stacker.exposure import block_mean, estimate_gain
from stacker.synthetic import texture

SHAPE = (240, 320)


def test_estimate_gain_ignores_focus_and_invalid_pixels():
    rng = np.random.default_rng(5)
    reference = 0.15 + 0.6 * texture(SHAPE, seed=4).astype(np.float64)
    warped = focused(reference, 3.0, rng) / 1.2
    valid = np.ones(SHAPE, bool)
    valid[:, :60] = False
    warped[~valid] = 0.0  # what lies outside must not count
    assert estimate_gain(reference, warped, valid) == pytest.approx(1.2, rel=0.01)
    as_uint8 = [np.rint(x * 255).astype(np.uint8) for x in (reference, np.clip(warped, 0, 1))]
    assert estimate_gain(*as_uint8, valid) == pytest.approx(1.2, rel=0.01)


def test_gain_of_a_strip_thinner_than_its_blocks_is_one():
    # 3 x 70000: blocks of ceil(70000 / 256) = 274 px leave no whole block.
    ref = np.random.default_rng(9).random((3, 70000)).astype(np.float32)
    assert estimate_gain(ref, ref / 2, np.ones(ref.shape, bool)) == 1.0


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.float32, np.float64])
def test_block_mean_drops_partial_blocks_and_returns_float32(dtype):
    image = np.random.default_rng(1).integers(0, 2, (23, 31)).astype(dtype)
    small = block_mean(image, 3)
    assert small.shape == (7, 10) and small.dtype == np.float32
    expected = image[:21, :30].astype(np.float64).reshape(7, 3, 10, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small, expected, rtol=1e-6)
