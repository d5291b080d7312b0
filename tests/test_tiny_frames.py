"""Frames smaller than the filters: every method still gives a slice or a blend of slices."""

import warnings

import numpy as np
import pytest

import stacker
from stacker.pyramid import laplacian_pyramid

VALUES = np.array([0, 10, 20, 30, 40], np.uint8)
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 3), (5, 4)]


def _flat_stack(shape):
    return np.broadcast_to(VALUES[:, None, None], (len(VALUES), *shape)).copy()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["depthmap", "pyramid", "argmax"])
def test_flat_slices_give_a_slice_or_a_blend(shape, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stacker.StackWarning)
        result = stacker.merge(_flat_stack(shape), method=method, brightness=False)
    assert result.composite.shape == shape and result.composite.dtype == np.uint8
    # No slice has texture: argmax and depthmap keep the first; the pyramid's
    # low-pass residual is the mean of the slices, here the middle one.
    expected = 20 if method == "pyramid" else 0
    assert (result.composite == expected).all()
    assert (result.depth == 0).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_flat_image_has_flat_pyramid_bands(shape):
    # Regression: upsampling by a fixed gain of 4 is only right inside the
    # frame; near the edges of a few-pixel frame it made flat bands non-zero,
    # and the pyramid method then returned 40 for the stack 0, 10, 20, 30, 40.
    bands = laplacian_pyramid(np.full(shape, 0.5, np.float32), 2)
    for band in bands[:-1]:
        np.testing.assert_allclose(band, 0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["depthmap", "pyramid", "argmax"])
def test_textured_tiny_frames_stay_in_range(shape, method):
    rng = np.random.default_rng(sum(shape))
    stack = rng.integers(0, 256, (4, *shape), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stacker.StackWarning)
        result = stacker.merge(stack, method=method, brightness=False)
    assert result.composite.shape == shape
    assert stack.min() <= result.composite.min() and result.composite.max() <= stack.max()
    assert ((result.depth >= 0) & (result.depth <= 3)).all()
    if method == "argmax":
        # each pixel is one of its own slices' values
        assert (result.composite[None] == stack).any(axis=0).all()
