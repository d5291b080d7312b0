import numpy as np
import pytest
from scipy import ndimage

from stacker._filters import gaussian


@pytest.mark.parametrize("shape", [(40, 5), (37, 64), (129, 200), (3, 300)])
@pytest.mark.parametrize("sigma, truncate", [(1.0, 4.0), (2.0, 3.0), (8.0, 3.0)])
def test_gaussian_equals_scipy(shape, sigma, truncate):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    expected = ndimage.gaussian_filter(image, sigma, truncate=truncate, mode="reflect")
    np.testing.assert_allclose(gaussian(image, sigma, truncate=truncate), expected, atol=1e-6)


def test_gaussian_in_place_and_column_blocks_agree():
    image = np.random.default_rng(1).random((90, 150)).astype(np.float32)
    whole = gaussian(image, 2.0)
    # Columns 64-127 alone: the same wherever the part's own edges are not reached.
    part = gaussian(np.ascontiguousarray(image[:, 50:150]), 2.0)
    np.testing.assert_array_equal(part[:, 14:-9], whole[:, 64:141])
    np.testing.assert_array_equal(gaussian(image.copy(), 2.0, out=image), whole)
