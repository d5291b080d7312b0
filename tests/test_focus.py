import numpy as np
import pytest
from scipy import ndimage

from stacker.focus import FOCUS_MEASURES, focus_measure, focus_radius, local_variance, to_gray


def test_local_variance_equals_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.random((20, 24))
    direct = (
        ndimage.gaussian_filter(x * x, 1.5, truncate=3)
        - ndimage.gaussian_filter(x, 1.5, truncate=3) ** 2
    )
    np.testing.assert_allclose(local_variance(x, sigma=1.5), direct, atol=1e-6)


def test_focus_measure_translation_equivariant():
    rng = np.random.default_rng(2)
    x = rng.random((64, 64))
    shifted = np.roll(x, (5, -7), axis=(0, 1))
    a = np.roll(focus_measure(x), (5, -7), axis=(0, 1))
    b = focus_measure(shifted)
    # Away from the borders (reflect padding differs there) the maps agree.
    np.testing.assert_allclose(a[16:-16, 16:-16], b[16:-16, 16:-16], rtol=1e-4, atol=1e-7)


def test_focus_measure_ignores_brightness_offset():
    rng = np.random.default_rng(3)
    x = rng.random((32, 32)).astype(np.float32) * 0.01
    np.testing.assert_allclose(focus_measure(x + 1000), focus_measure(x), rtol=0.02, atol=1e-9)


@pytest.mark.parametrize(
    "image",
    [np.zeros((16, 16)), np.full((16, 16), 65535, np.uint16), np.full((16, 16), 1e6, np.float32)],
)
def test_focus_measure_flat_images_are_zero_never_nan(image):
    f = focus_measure(image)
    assert np.isfinite(f).all()
    assert (f >= 0).all()
    assert f.max() < 1e-6 * max(1.0, float(image.max()) ** 2)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 3])
def test_sharp_above_blurred(dtype, channels):
    rng = np.random.default_rng(4)
    shape = (48, 48) if channels is None else (48, 48, channels)
    sharp = rng.random(shape)
    blurred = ndimage.gaussian_filter(sharp, (2, 2, 0)[: sharp.ndim])
    scale = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1
    fs = focus_measure((sharp * scale).astype(dtype))
    fb = focus_measure((blurred * scale).astype(dtype))
    assert fs.dtype == np.float32 and fs.shape == (48, 48)
    assert (fs[4:-4, 4:-4] > fb[4:-4, 4:-4]).mean() > 0.99


def test_integer_scaling_makes_dtypes_comparable():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    np.testing.assert_allclose(
        focus_measure(x), focus_measure(x.astype(np.uint16) * 257), rtol=1e-4, atol=1e-9
    )


def test_to_gray_uses_luma():
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[0, 2, 2] = 255
    np.testing.assert_allclose(to_gray(rgb)[0], [0.299, 0.587, 0.114], rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"sigma": 0}, {"sigma": -1}, {"measure": "nope"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="sigma|measure"):
        focus_measure(np.zeros((8, 8)), **kwargs)


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((4, 4, 2)))


def test_registry_holds_reference_measure():
    assert FOCUS_MEASURES["variance"] is local_variance


def test_tiles_with_a_shared_offset_equal_the_whole_image():
    rng = np.random.default_rng(4)
    image = rng.random((64, 80)).astype(np.float32) + 5
    whole = local_variance(image, sigma=2.0, offset=5.5)
    r = focus_radius(2.0)
    # The tile's centre is more than the focus radius from its edges.
    tile = local_variance(image[10 : 40 + 2 * r, :], sigma=2.0, offset=5.5)
    np.testing.assert_array_equal(tile[r : r + 30 - r], whole[10 + r : 40])
    # The default offset (the image's mean) differs between tile and image.
    np.testing.assert_allclose(local_variance(image), whole, rtol=1e-4, atol=1e-6)
