import numpy as np
import pytest
from scipy import ndimage

from stacker.focus import (
    FOCUS_MEASURES,
    focus_measure,
    focus_radius,
    local_variance,
    mean_local_std,
    to_gray,
)

MEASURES = list(FOCUS_MEASURES)


def test_local_variance_equals_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.random((20, 24))
    direct = (
        ndimage.gaussian_filter(x * x, 1.5, truncate=3)
        - ndimage.gaussian_filter(x, 1.5, truncate=3) ** 2
    )
    np.testing.assert_allclose(local_variance(x, sigma=1.5), direct, atol=1e-6)


@pytest.mark.parametrize("measure", MEASURES)
def test_focus_measure_translation_equivariant(measure):
    rng = np.random.default_rng(2)
    x = rng.random((64, 64))
    shifted = np.roll(x, (5, -7), axis=(0, 1))
    a = np.roll(focus_measure(x, measure=measure), (5, -7), axis=(0, 1))
    b = focus_measure(shifted, measure=measure)
    # Away from the borders (reflect padding differs there) the maps agree.
    np.testing.assert_allclose(a[16:-16, 16:-16], b[16:-16, 16:-16], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("measure", MEASURES)
def test_focus_measure_ignores_brightness_offset(measure):
    rng = np.random.default_rng(3)
    x = rng.random((32, 32)).astype(np.float32) * 0.01
    np.testing.assert_allclose(
        focus_measure(x + 1000, measure=measure),
        focus_measure(x, measure=measure),
        rtol=0.02,
        atol=1e-9,
    )


@pytest.mark.parametrize(
    "image",
    [np.zeros((16, 16)), np.full((16, 16), 65535, np.uint16), np.full((16, 16), 1e6, np.float32)],
)
@pytest.mark.parametrize("measure", MEASURES)
def test_focus_measure_flat_images_are_zero_never_nan(image, measure):
    f = focus_measure(image, measure=measure)
    assert np.isfinite(f).all()
    assert (f >= 0).all()
    assert f.max() < 1e-6 * max(1.0, float(image.max()) ** 2)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_flat_area_beside_texture_is_exactly_zero(measure, sigma):
    # Away from the mean, a flat area's E[x^2] and E[x]^2 round differently in float32.
    image = np.full((30, 120), 0.9, np.float32)
    image[:, :40] = np.random.default_rng(3).random((30, 40))
    f = focus_measure(image, sigma=sigma, measure=measure)
    assert f[:, 40 + focus_radius(sigma, measure) :].max() == 0
    assert f[:, :30].min() > 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("measure", MEASURES)
def test_sharp_above_blurred(dtype, channels, measure):
    rng = np.random.default_rng(4)
    shape = (48, 48) if channels is None else (48, 48, channels)
    sharp = rng.random(shape)
    blurred = ndimage.gaussian_filter(sharp, (2, 2, 0)[: sharp.ndim])
    scale = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1
    fs = focus_measure((sharp * scale).astype(dtype), measure=measure)
    fb = focus_measure((blurred * scale).astype(dtype), measure=measure)
    assert fs.dtype == np.float32 and fs.shape == (48, 48)
    assert (fs[4:-4, 4:-4] > fb[4:-4, 4:-4]).mean() > 0.99


@pytest.mark.parametrize("measure", MEASURES)
def test_integer_scaling_makes_dtypes_comparable(measure):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    np.testing.assert_allclose(
        focus_measure(x, measure=measure),
        focus_measure(x.astype(np.uint16) * 257, measure=measure),
        rtol=1e-4,
        atol=1e-9,
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_to_gray_of_a_tall_image_is_the_luma_of_every_row(dtype):
    # Taller than one band of rows, and not a multiple of it.
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    rgb = (rng.random((300, 7, 3)) * top).astype(dtype)
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / top
    gray = to_gray(rgb)
    assert gray.dtype == np.float32 and gray.shape == (300, 7)
    np.testing.assert_allclose(gray, expected, rtol=1e-6, atol=1e-7)


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


def test_registry_holds_the_measures():
    assert FOCUS_MEASURES["variance"] is local_variance
    assert FOCUS_MEASURES["mean-std"] is mean_local_std


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_tiles_with_a_shared_offset_equal_the_whole_image(measure, sigma):
    func = FOCUS_MEASURES[measure]
    rng = np.random.default_rng(4)
    image = rng.random((64, 80)).astype(np.float32) + 5
    whole = func(image, sigma=sigma, offset=5.5)
    r = focus_radius(sigma, measure)
    # Rows 10 + r .. 40 are at least the focus radius from the tile's edges.
    tile = func(image[10 : 40 + r, :], sigma=sigma, offset=5.5)
    np.testing.assert_array_equal(tile[r:30], whole[10 + r : 40])
    # One row less of margin and the tile differs.
    short = func(image[10 : 40 + r - 1, :], sigma=sigma, offset=5.5)
    assert not np.array_equal(short[r:30], whole[10 + r : 40])
    # The default offset (the image's mean) differs between tile and image.
    np.testing.assert_allclose(func(image, sigma=sigma), whole, rtol=1e-4, atol=1e-6)


def test_mean_std_of_a_ramp_is_its_fine_variance():
    # A ramp has the same local variance everywhere, so averaging its square
    # root over the outer window gives it back.
    ramp = np.tile(np.arange(60, dtype=np.float32) * 0.01, (40, 1))
    inner = np.s_[10:-10, 10:-10]
    expected = local_variance(ramp, sigma=1.0)[inner]
    np.testing.assert_allclose(expected, 1e-4, rtol=0.05)  # slope**2 * sigma**2
    np.testing.assert_allclose(mean_local_std(ramp, sigma=2.0)[inner], expected, rtol=1e-4)


def test_mean_std_lets_texture_outvote_a_nearby_edge():
    # Beside an occlusion edge, slice A has the background texture sharp and the
    # near object's edge blurred; slice B the edge sharp and the texture blurred.
    rng = np.random.default_rng(6)
    texture = 0.05 * rng.standard_normal((48, 64))
    edge = np.where(np.arange(64) >= 32, 1.0, 0.0) * np.ones((48, 1))
    a = texture + ndimage.gaussian_filter(edge, 3)
    b = ndimage.gaussian_filter(texture, 3) + edge
    near = np.s_[8:-8, 28]  # background pixels 4 px from the edge
    # The variance sees the edge reach into the background and prefers B ...
    assert (local_variance(b)[near] > local_variance(a)[near]).all()
    # ... the mean deviation sees the texture the background has in A.
    assert (mean_local_std(a)[near] > mean_local_std(b)[near]).all()


def test_focus_radius_grows_with_sigma_and_knows_each_measure():
    assert focus_radius(2.0) == 6 and focus_radius(4.0) == 12
    assert focus_radius(2.0, "mean-std") == 8
    with pytest.raises(ValueError, match="measure"):
        focus_radius(2.0, "nope")


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("sigma", [1.0, 40.0])
def test_bands_and_overwrite_give_the_whole_frame_result(measure, sigma, monkeypatch):
    # 300 rows: three bands of 128, and at sigma 40 a reach beyond one band.
    import stacker.focus

    func = FOCUS_MEASURES[measure]
    gray = np.random.default_rng(8).random((300, 70)).astype(np.float32)
    banded = func(gray, sigma=sigma)
    in_place = gray.copy()
    assert func(in_place, sigma=sigma, overwrite=True) is in_place
    monkeypatch.setattr(stacker.focus, "_MEASURE_ROWS", 10**6)
    whole = func(gray, sigma=sigma)
    np.testing.assert_array_equal(banded, whole)
    np.testing.assert_array_equal(in_place, whole)
