import numpy as np
import pytest

from stacker.io import open_stack
from stacker.slices import SliceReader, Survey, noise_window, value_range
from stacker.tiles import tile_grid


@pytest.mark.parametrize(
    "inner, expected",
    [
        ((slice(0, 100), slice(10, 50)), (slice(0, 100), slice(10, 50))),  # small: all of it
        ((slice(5, 3005), slice(0, 1024)), (slice(993, 2017), slice(0, 1024))),  # central
    ],
)
def test_noise_window_is_the_central_piece(inner, expected):
    assert noise_window(inner) == expected


@pytest.mark.parametrize(
    "dtype, expected", [(np.uint8, (10 / 255, 200 / 255)), (np.float32, (10.0, 200.0))]
)
def test_value_range_is_the_stacks_in_pyramid_units(dtype, expected):
    surveys = [Survey(1.0, 0.0, 0.0, 10, 100), Survey(1.0, 0.0, 0.0, 50, 200)]
    np.testing.assert_allclose(value_range(surveys, np.dtype(dtype)), expected, rtol=1e-6)
    assert value_range([Survey(1.0, 0.0, 0.0)], np.dtype(dtype)) is None  # not surveyed


def test_survey_in_tiles_equals_measuring_the_whole_slice():
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 90, 120)) * 200).astype(np.uint8)
    stack[1] = (stack[1] * 0.8).astype(np.uint8)  # exposure flicker
    opened = open_stack(stack)
    frame = (slice(0, 90), slice(0, 120))
    reader = SliceReader(
        opened, [np.eye(3)] * 3, frame, 2, noise_window(frame), lambda g, **k: g, 2.0
    )
    whole = tile_grid((90, 120), None, 0)
    tiles = tile_grid((90, 120), 32, 0, 2)
    reference = reader.block_means(0, np.eye(3), whole)[0]
    np.testing.assert_array_equal(reader.block_means(0, np.eye(3), tiles)[0], reference)
    surveyed = reader.survey(1, tiles, reference)
    image, _, _, inline = reader.prepare(1, whole[0], None, reference)
    assert surveyed.gain == inline.gain and abs(surveyed.gain - 1.25) < 0.02
    assert surveyed.noise == inline.noise and surveyed.offset == inline.offset
    # The value range is that of the corrected slice.
    assert (surveyed.low, surveyed.high) == (image.min(), image.max())
