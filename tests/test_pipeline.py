import tracemalloc

import numpy as np
import pytest
from conftest import band_interior, psnr, region_stack

import stacker
from stacker.io import StackWarning, convert_dtype
from stacker.pipeline import METHODS
from stacker.synthetic import height_field, render_stack, texture


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_depth_matches_known_answer(method, dtype, channels):
    stack, truth, sharp = region_stack(6, channels=channels, dtype=dtype)
    result = stacker.merge(stack, method=method)
    inside = band_interior(truth, margin=4)
    exact = (np.rint(result.depth[inside]) == truth[inside]).mean()
    assert exact >= 0.95, exact
    assert result.depth.dtype == np.float32 and result.n_slices == 6
    # dtype and channels are kept
    assert result.composite.dtype == dtype and result.composite.shape == stack.shape[1:]


@pytest.mark.parametrize("method", METHODS)
def test_composite_much_closer_to_truth_than_any_slice(method):
    stack, truth, sharp = region_stack(6, channels=3)
    result = stacker.merge(stack, method=method)
    as_float = convert_dtype(result.composite, "float32")
    best_slice = max(psnr(convert_dtype(s, "float32"), sharp) for s in stack)
    assert psnr(as_float, sharp) > best_slice + 6


@pytest.fixture(scope="module")
def dome():
    """A rendered dome (disc defocus, noise) whose height is known in slice units."""
    shape, n = (96, 128), 10
    sharp = texture(shape, channels=3, seed=3)
    height = (0.3 + height_field("dome", shape) * (n - 1.6)).astype(np.float32)
    return render_stack(sharp, height, n, blur_per_slice=1.5, noise=0.01, seed=3), height, sharp


def _depth_rmse(result, height):
    return float(np.sqrt(np.mean((result.depth - height)[8:-8, 8:-8] ** 2)))


def test_depthmap_recovers_smooth_surface_to_sub_slice(dome):
    stack, height, sharp = dome
    fine, coarse = stacker.merge(stack), stacker.merge(stack, method="argmax")
    # Measured: 0.08 slices for depthmap, 0.31 for the integer argmax.
    assert _depth_rmse(fine, height) < 0.15
    assert _depth_rmse(fine, height) < 0.5 * _depth_rmse(coarse, height)
    # Blending the slices around the peak beats a hard pick on a smooth surface.
    gain = psnr(convert_dtype(fine.composite, "float32"), sharp) - psnr(
        convert_dtype(coarse.composite, "float32"), sharp
    )
    assert gain > 0.05, gain  # measured 0.12 dB


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_the_dome(dome, method):
    stack, height, sharp = dome
    result = stacker.merge(stack, method=method)
    assert np.mean(np.abs(result.depth - height)[8:-8, 8:-8] <= 1) > 0.99
    assert psnr(convert_dtype(result.composite, "float32"), sharp) > 33


def test_confidence_is_low_on_flat_field_and_high_on_texture():
    rng = np.random.default_rng(0)
    stack, _, _ = region_stack(5, shape=(64, 64))
    noisy_flat = np.clip(128 + 3 * rng.standard_normal(stack.shape), 0, 255)
    stack = stack.copy()
    stack[:, :, :32] = noisy_flat[:, :, :32].astype(np.uint8)
    conf = stacker.merge(stack).confidence
    assert conf[8:-8, 4:24].mean() < 0.2
    assert conf[8:-8, 40:60].mean() > 0.8


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        stacker.merge(np.zeros((2, 4, 4)), method="magic")


def test_same_answer_from_files_as_from_arrays(write_slices):
    stack, _, _ = region_stack(4, shape=(32, 40))
    paths = write_slices(stack)
    a, b = stacker.merge(paths), stacker.merge(stack)
    np.testing.assert_array_equal(a.composite, b.composite)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.names == [p.name for p in paths]


@pytest.mark.parametrize("method", METHODS)
def test_one_slice_warns_and_returns_it(method):
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    with pytest.warns(StackWarning, match="only one slice"):
        result = stacker.merge([img], method=method)
    np.testing.assert_array_equal(result.composite, img)
    assert (result.depth == 0).all()


@pytest.mark.parametrize("method", METHODS)
def test_identical_slices_give_that_slice(method):
    img = np.random.default_rng(1).integers(0, 65535, (40, 50), dtype=np.uint16)
    result = stacker.merge(np.stack([img] * 4), method=method)
    assert np.abs(result.composite.astype(int) - img).max() <= 1
    assert np.isfinite(result.depth).all()


@pytest.mark.parametrize("method", METHODS)
def test_flat_stack_is_deterministic(method):
    result = stacker.merge(np.full((5, 6, 6), 40, np.uint8), method=method, align="none")
    assert np.isfinite(result.depth).all() and (result.sharpness == 0).all()
    assert (result.composite == 40).all()


def test_progress_is_reported_per_slice():
    calls = []
    stacker.merge(np.zeros((3, 4, 4)), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def _peak_bytes(paths, method):
    tracemalloc.start()
    stacker.merge(paths, method=method)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("method", METHODS)
def test_memory_does_not_grow_with_slice_count(write_slices, method):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    paths = write_slices(np.broadcast_to(plane, (40, *plane.shape)))
    peak10, peak40 = _peak_bytes(paths[:10], method), _peak_bytes(paths, method)
    slice_bytes = plane.nbytes
    # Holding the stack would cost 30 more slices; streaming costs none.
    assert peak40 < peak10 + 2 * slice_bytes, (peak10, peak40)
