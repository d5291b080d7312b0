"""Pixel value maths between dtypes: range conversion, rounding and clipping."""

from __future__ import annotations

import numpy as np
import pytest

from stacker._dtype import convert_dtype, round_into


@pytest.mark.parametrize(
    "src,dtype,expected",
    [
        (np.array([0, 255], np.uint8), "uint16", [0, 65535]),
        (np.array([0, 257, 65535], np.uint16), "uint8", [0, 1, 255]),
        (np.array([-0.5, 0.5, 2.0], np.float32), "uint8", [0, 128, 255]),
        (np.array([0, 255], np.uint8), "float32", [0.0, 1.0]),
    ],
)
def test_convert_dtype(src, dtype, expected):
    out = convert_dtype(src, dtype)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_round_into_clips_to_integer_range_in_place(dtype):
    info = np.iinfo(dtype)
    values = np.array([info.min - 10.0, -0.5, 2.5, 7.6, info.max + 10.0])
    out = round_into(values, dtype)
    assert out is values
    np.testing.assert_array_equal(out, [info.min, 0, 2, 8, info.max])


def test_round_into_leaves_floats_alone():
    values = np.array([-3.25, 7.6, 300.0])
    np.testing.assert_array_equal(round_into(values.copy(), np.float32), values)
