import tracemalloc

import numpy as np
import pytest
from conftest import band_interior, psnr, region_stack

import stacker
from stacker.io import StackWarning, convert_dtype


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_depth_matches_known_answer(dtype, channels):
    stack, truth, sharp = region_stack(6, channels=channels, dtype=dtype)
    result = stacker.merge(stack)
    inside = band_interior(truth, margin=4)
    exact = (result.depth[inside] == truth[inside]).mean()
    assert exact >= 0.95, exact
    assert result.depth.dtype == np.float32 and result.n_slices == 6
    # dtype and channels are kept
    assert result.composite.dtype == dtype and result.composite.shape == stack.shape[1:]


def test_composite_much_closer_to_truth_than_any_slice():
    stack, truth, sharp = region_stack(6, channels=3)
    result = stacker.merge(stack)
    as_float = convert_dtype(result.composite, "float32")
    best_slice = max(psnr(convert_dtype(s, "float32"), sharp) for s in stack)
    assert psnr(as_float, sharp) > best_slice + 6


def test_same_answer_from_files_as_from_arrays(write_slices):
    stack, _, _ = region_stack(4, shape=(32, 40))
    paths = write_slices(stack)
    a, b = stacker.merge(paths), stacker.merge(stack)
    np.testing.assert_array_equal(a.composite, b.composite)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.names == [p.name for p in paths]


def test_one_slice_warns_and_returns_it():
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    with pytest.warns(StackWarning, match="only one slice"):
        result = stacker.merge([img])
    np.testing.assert_array_equal(result.composite, img)
    assert (result.depth == 0).all()


def test_flat_stack_is_deterministic():
    result = stacker.merge(np.full((5, 6, 6), 40, np.uint8))
    assert (result.depth == 0).all() and (result.sharpness == 0).all()


def test_progress_is_reported_per_slice():
    calls = []
    stacker.merge(np.zeros((3, 4, 4)), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def _peak_bytes(paths):
    tracemalloc.start()
    stacker.merge(paths)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_slice_count(write_slices):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    paths = write_slices(np.broadcast_to(plane, (40, *plane.shape)))
    peak10, peak40 = _peak_bytes(paths[:10]), _peak_bytes(paths)
    slice_bytes = plane.nbytes
    # Holding the stack would cost 30 more slices; streaming costs none.
    assert peak40 < peak10 + 2 * slice_bytes, (peak10, peak40)
