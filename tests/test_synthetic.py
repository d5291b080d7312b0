import time

import numpy as np
import pytest

from stacker.synthetic import (
    HEIGHT_KINDS,
    _disc_kernel,
    height_field,
    render_stack,
    texture,
)


def _gradient_energy(img):
    img = np.asarray(img, float)
    return np.mean(np.diff(img, axis=0) ** 2) + np.mean(np.diff(img, axis=1) ** 2)


def _psnr(a, b):
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return 10 * np.log10(1 / mse)


@pytest.mark.parametrize("channels", [None, 3])
def test_texture_range_shape_and_determinism(channels):
    img = texture((40, 56), channels=channels, seed=3)
    expected = (40, 56) if channels is None else (40, 56, 3)
    assert img.shape == expected
    assert img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    np.testing.assert_array_equal(img, texture((40, 56), channels=channels, seed=3))
    assert not np.array_equal(img, texture((40, 56), channels=channels, seed=4))


def test_texture_has_fine_detail_everywhere():
    img = texture((64, 64), seed=1).astype(float)
    # Local gradient magnitude in every 8x8 tile must be clearly non-zero.
    grad = np.abs(np.diff(img, axis=1))[:, :56].reshape(8, 8, 7, 8).mean(axis=(1, 3))
    assert grad.min() > 0.01


@pytest.mark.parametrize("bad", [{"shape": (0, 5)}, {"shape": (4,)}, {"channels": 0}])
def test_texture_rejects_bad_arguments(bad):
    kwargs = {"shape": (8, 8), **bad}
    shape = kwargs.pop("shape")
    with pytest.raises(ValueError, match=next(iter(bad))):
        texture(shape, **kwargs)


@pytest.mark.parametrize("kind", HEIGHT_KINDS)
def test_height_field_range_and_shape(kind):
    h = height_field(kind, (30, 44), seed=2)
    assert h.shape == (30, 44)
    assert h.dtype == np.float32
    assert h.min() >= 0 and h.max() <= 1
    assert h.max() - h.min() > 0.5


def test_height_field_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        height_field("volcano", (8, 8))


def test_height_field_object_has_sharp_edge():
    h = height_field("object", (64, 64))
    assert np.abs(np.diff(h, axis=1)).max() > 0.8


@pytest.mark.parametrize("radius", [1.0, 2.3, 3.0, 5.5])
def test_disc_kernel_sum_and_support(radius):
    k = _disc_kernel(radius)
    half = int(np.ceil(radius - 0.5))
    assert k.shape == (2 * half + 1, 2 * half + 1)
    np.testing.assert_allclose(k.sum(), 1.0)
    # Support: pixels whose centre is inside the disc are covered, pixels
    # whose nearest point lies outside it are empty.
    off = np.abs(np.arange(-half, half + 1))
    near = np.maximum(off - 0.5, 0)
    nearest = np.hypot(near[:, None], near[None, :])
    centre = np.hypot(off[:, None], off[None, :])
    assert np.all(k[centre < radius] > 0)
    assert np.all(k[nearest >= radius] == 0)
    assert k[half, 0] > 0  # the disc reaches the edge of the kernel
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])


@pytest.mark.parametrize("radius", [0.0, 0.3, 0.5])
def test_disc_kernel_small_radius_is_delta(radius):
    np.testing.assert_array_equal(_disc_kernel(radius), [[1.0]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_render_stack_shape_and_dtype(dtype, channels):
    sharp = texture((24, 32), channels=channels)
    height = 3 * height_field("dome", (24, 32))
    stack = render_stack(sharp, height, 4, dtype=dtype)
    assert stack.shape == (4, *sharp.shape)
    assert stack.dtype == dtype
    if dtype is np.float32:
        assert stack.min() >= 0 and stack.max() <= 1
    else:
        # Integer types use their full range.
        assert stack.max() > 0.5 * np.iinfo(dtype).max


def test_render_stack_focused_slice_reproduces_sharp():
    sharp = texture((48, 48), seed=5)
    stack = render_stack(sharp, np.full((48, 48), 2.0), 5, noise=0.005, dtype=np.float32)
    assert _psnr(stack[2], sharp) > 35
    assert _psnr(stack[0], sharp) < 30
    # Blur grows with distance from the focal plane.
    energy = [_gradient_energy(s) for s in stack]
    assert energy[0] < 0.3 * energy[2]
    assert energy[0] < energy[1] < energy[2] > energy[3] > energy[4]


def test_render_stack_point_spread_is_centred_disc():
    sharp = np.zeros((31, 33))
    sharp[15, 16] = 1.0
    stack = render_stack(sharp, np.zeros((31, 33)), 3, noise=0, dtype=np.float32)
    # Slice 2 is two slice units out of focus: disc radius 2 * 1.5 = 3 px.
    np.testing.assert_allclose(stack[2][12:19, 13:20], _disc_kernel(3.0), atol=1e-5)
    np.testing.assert_allclose(stack[2].sum(), 1.0, atol=1e-4)


def test_render_stack_flat_height_preserves_mean_and_borders():
    sharp = texture((40, 40), channels=3, seed=6)
    stack = render_stack(sharp, np.full((40, 40), 2.0), 5, noise=0, dtype=np.float32)
    for s in stack:
        np.testing.assert_allclose(s.mean(axis=(0, 1)), sharp.mean(axis=(0, 1)), atol=0.01)
        # Reflect padding: the border rows are not darkened by the blur.
        np.testing.assert_allclose(s[0].mean(), sharp[0].mean(), atol=0.05)
        np.testing.assert_allclose(s[:, -1].mean(), sharp[:, -1].mean(), atol=0.05)


@pytest.mark.parametrize("kind", ["plane", "dome", "terraces"])
def test_render_stack_uniform_image_has_no_seams(kind):
    # A constant image must stay constant whatever the layering: any dark
    # seam between depth layers or darkening at borders would show here.
    height = 5 * height_field(kind, (32, 40))
    stack = render_stack(np.full((32, 40), 0.6), height, 6, noise=0, dtype=np.float32)
    np.testing.assert_allclose(stack, 0.6, atol=1e-4)


def test_render_stack_near_object_spills_over_background():
    # Dark foreground disc at height 4 over a bright background at height 0.
    yy, xx = np.indices((48, 48))
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 < 10**2
    sharp = np.where(disc, 0.1, 0.9)
    stack = render_stack(sharp, np.where(disc, 4.0, 0.0), 5, noise=0, dtype=np.float32)
    ring = ~disc & ((yy - 24) ** 2 + (xx - 24) ** 2 < 12**2)
    assert stack[0][ring].mean() < 0.8  # blurred near edge covers the sharp background
    np.testing.assert_allclose(stack[4][ring].mean(), 0.9, atol=0.01)


def test_render_stack_noise_level_and_determinism():
    sharp = np.full((64, 64), 0.5)
    a = render_stack(sharp, np.zeros((64, 64)), 2, noise=0.02, seed=1, dtype=np.float32)
    b = render_stack(sharp, np.zeros((64, 64)), 2, noise=0.02, seed=1, dtype=np.float32)
    np.testing.assert_array_equal(a, b)
    assert 0.02 < a.std() < 0.03  # read noise plus shot noise


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_slices": 0}, "n_slices"),
        ({"height": np.zeros((5, 5))}, "height"),
        ({"dtype": np.int32}, "dtype"),
        ({"noise": -1.0}, "noise"),
        ({"blur_per_slice": -1.0}, "blur_per_slice"),
        ({"layers_per_slice": 0}, "layers_per_slice"),
    ],
)
def test_render_stack_rejects_bad_arguments(kwargs, match):
    args = {"sharp": np.zeros((8, 8)), "height": np.zeros((8, 8)), "n_slices": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_stack(**args)


def test_render_stack_is_fast():
    sharp = texture((128, 128))
    height = 7 * height_field("dome", (128, 128))
    start = time.perf_counter()
    render_stack(sharp, height, 8)
    assert time.perf_counter() - start < 1.0
