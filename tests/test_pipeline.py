import tracemalloc

import numpy as np
import pytest
from conftest import band_interior, psnr, region_stack
from scipy import ndimage

import stacker
from stacker._dtype import convert_dtype
from stacker.align import warp
from stacker.composite import DepthBlend
from stacker.io import StackWarning
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
    # The composite samples the stack at its depth: as good as sampling it at the truth's.
    ideal = DepthBlend(height.clip(0, len(stack) - 1), stack.shape[1:], len(stack))
    for k in ideal.slices:
        ideal.add(k, stack[k])
    gap = psnr(convert_dtype(fine.composite, "float32"), sharp) - psnr(
        convert_dtype(ideal.result(stack.dtype), "float32"), sharp
    )
    assert gap > -0.1, gap  # measured +0.24 dB


def test_depthmap_is_not_fooled_by_the_spill_of_a_strong_edge():
    # A flat plane at slice 4: a bright half beside a dark one, each nearly textureless.
    # Slices far from focus spread the edge over the dark and bright areas beside it.
    rng = np.random.default_rng(0)
    image = np.full((64, 96), 0.25, np.float32)
    image[:, 48:] = 0.85
    image += 0.004 * rng.standard_normal(image.shape).astype(np.float32)
    stack = render_stack(image, np.full(image.shape, 4.0), 9, blur_per_slice=2.0, noise=0.002)
    beside = (slice(10, -10), slice(52, 62))  # 4-14 px from the edge
    depth = stacker.merge(stack, align="none").depth[beside]
    # Measured: at most 0.16 slice off; the argmax is up to 4 slices off (the spill's slice).
    assert np.abs(depth - 4).max() < 0.5
    argmax = stacker.merge(stack, method="argmax", align="none").depth[beside]
    assert np.abs(argmax - 4).max() >= 3


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_the_dome(dome, method):
    stack, height, sharp = dome
    result = stacker.merge(stack, method=method)
    assert np.mean(np.abs(result.depth - height)[8:-8, 8:-8] <= 1) > 0.99
    assert psnr(convert_dtype(result.composite, "float32"), sharp) > 33


def test_depthmap_narrows_the_halo_at_an_occlusion_edge():
    shape, n = (128, 128), 8
    sharp = texture(shape, channels=3, seed=2)
    height = (height_field("object", shape, seed=2) * (n - 1)).astype(np.float32)
    stack = render_stack(sharp, height, n, blur_per_slice=1.5, noise=0.01, seed=2)
    near = height > 3.5
    band = ndimage.binary_dilation(near, iterations=6) & ~ndimage.binary_erosion(near, iterations=6)

    def band_psnr(**kwargs):
        composite = convert_dtype(stacker.merge(stack, **kwargs).composite, "float32")
        return psnr(composite[band], sharp[band])

    default = band_psnr()
    # Measured: 27.11 dB, against 26.76 with the variance measure and 26.91 for argmax.
    assert default > band_psnr(measure="variance") + 0.25
    assert default > band_psnr(method="argmax") + 0.1


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


@pytest.mark.parametrize(
    "method, stages",
    [
        ("argmax", ["compositing"] * 3),
        ("pyramid", ["compositing"] * 3),
        ("depthmap", ["measuring"] * 3 + ["compositing"] * 3),
    ],
)
def test_progress_is_reported_per_slice_of_each_pass(method, stages):
    calls = []
    stacker.merge(
        np.zeros((3, 4, 4)),
        method=method,
        align="none",
        progress=lambda d, t, stage: calls.append((d, t, stage)),
    )
    total = len(stages)
    assert calls == [(d, total, s) for d, s in zip(range(1, total + 1), stages, strict=True)]


def test_progress_counts_both_passes_when_aligning():
    stack, _, _ = region_stack(3, shape=(64, 64))
    calls = []
    stacker.merge(stack, method="argmax", progress=lambda d, t, stage: calls.append((d, t, stage)))
    assert calls[-1] == (6, 6, "compositing") and all(t == 6 for _, t, _ in calls)
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert [s for _, _, s in calls] == ["registering"] * 3 + ["compositing"] * 3


def _peak_bytes(paths, method):
    tracemalloc.start()
    # One thread: the peak then does not depend on how far workers ran ahead
    # (that is bounded separately, see test_parallel.py).
    stacker.merge(paths, method=method, threads=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("method", METHODS)
def test_memory_does_not_grow_with_slice_count(write_slices, method):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    paths = write_slices(np.broadcast_to(plane, (60, *plane.shape)))
    peak10, peak60 = _peak_bytes(paths[:10], method), _peak_bytes(paths, method)
    # Holding the stack would cost 50 more slices; streaming costs none.
    assert peak60 < peak10 + 2 * plane.nbytes, (peak10, peak60)


def _similarity(shape, scale, degrees, shift):
    """Reference (row, col, 1) -> slice coordinates: scale and rotation about the centre."""
    t = np.deg2rad(degrees)
    rot = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    centre = (np.array(shape[:2]) - 1) / 2
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = centre - rot @ centre + np.asarray(shift)
    return m


@pytest.fixture(scope="module")
def misaligned():
    """A rendered stack moved by known transforms (breathing, drift, rotation) and flicker."""
    shape, n = (160, 200), 8
    sharp = texture(shape, channels=3, seed=5)
    height = (0.3 + height_field("smooth", shape, seed=5) * (n - 1.6)).astype(np.float32)
    still = render_stack(sharp, height, n, blur_per_slice=1.2, noise=0.005, seed=5)
    ref = n // 2
    truth = [
        _similarity(shape, 1 + 0.005 * (k - ref), 0.2 * (k - ref), (1.5 * (k - ref), -(k - ref)))
        for k in range(n)
    ]
    gains = [1.0, 0.9, 1.0, 1.1, 1.0, 1.0, 0.95, 1.0]
    moved = np.stack(
        [
            np.clip(warp(s, np.linalg.inv(m))[0] / g, 0, 255).astype(np.uint8)
            for s, m, g in zip(still, truth, gains, strict=True)
        ]
    )
    return moved, still, truth, gains, height


def _rms_px(estimated, true, shape):
    grid = np.indices(shape[:2])[:, 10:-10:8, 10:-10:8].reshape(2, -1)
    pts = np.vstack([grid, np.ones(grid.shape[1])])
    return float(np.sqrt(np.mean(((estimated - true) @ pts)[:2] ** 2)))


def test_alignment_recovers_known_motion_and_flicker(misaligned):
    moved, still, truth, gains, height = misaligned
    result = stacker.merge(moved, crop=False)
    worst = max(
        _rms_px(e, t, moved.shape[1:]) for e, t in zip(result.transforms, truth, strict=True)
    )
    assert worst < 0.3, worst
    np.testing.assert_allclose(result.gains, gains, atol=0.02)


def test_aligned_composite_matches_stacking_without_motion(misaligned):
    moved, still, truth, gains, height = misaligned
    aligned = stacker.merge(moved, crop=False)
    reference = stacker.merge(still, align="none")
    unaligned = stacker.merge(moved, align="none", brightness=False)
    inner = (slice(16, -16), slice(16, -16))

    def score(r):
        return psnr(
            convert_dtype(r.composite, "float32")[inner],
            convert_dtype(reference.composite, "float32")[inner],
        )

    assert score(aligned) > 30 and score(aligned) > score(unaligned) + 8
    assert np.abs(aligned.depth - reference.depth)[inner].mean() < 0.3


def test_crop_is_the_rectangle_every_slice_covers(misaligned):
    moved = misaligned[0]
    cropped, full = stacker.merge(moved), stacker.merge(moved, crop=False)
    rows, cols = cropped.crop
    assert cropped.composite.shape[:2] == (rows.stop - rows.start, cols.stop - cols.start)
    assert 0 < rows.start and rows.stop < moved.shape[1] and 0 < cols.start
    assert (
        full.composite.shape == moved.shape[1:]
        and cropped.depth.shape == cropped.composite.shape[:2]
    )
    # The frame's corners lack data in some slices: zero confidence there.
    assert full.confidence[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
    assert full.confidence[rows, cols].mean() > 0.5
    # Inside (away from the crop's edge, where the focus window is cut) they agree.
    inside = full.composite[rows, cols][10:-10, 10:-10] == cropped.composite[10:-10, 10:-10]
    assert inside.mean() > 0.99


def test_given_transforms_reproduce_the_alignment(misaligned):
    moved = misaligned[0]
    first = stacker.merge(moved)
    again = stacker.merge(moved, transforms=first.transforms)
    np.testing.assert_array_equal(first.composite, again.composite)


def test_still_stack_is_not_warped():
    # Slices focused at different depths of a motionless scene look as if
    # they moved; that must not be taken for motion.
    stack, _, _ = region_stack(6, shape=(128, 160), channels=3)
    result = stacker.merge(stack)
    assert all(np.array_equal(m, np.eye(3)) for m in result.transforms)
    assert result.composite.shape == stack.shape[1:]


@pytest.mark.parametrize("policy", ["keep", "drop", "error"])
def test_slice_that_does_not_register(misaligned, policy):
    moved = misaligned[0].copy()
    moved[1] = np.random.default_rng(0).integers(0, 255, moved[1].shape)  # unrelated noise
    if policy == "error":
        with pytest.raises(stacker.StackError, match="slice 1.*did not register"):
            stacker.merge(moved, on_align_fail=policy)
        return
    with pytest.warns(StackWarning, match="slice 1.*did not register"):
        result = stacker.merge(moved, on_align_fail=policy)
    assert result.dropped == (["slice 1"] if policy == "drop" else [])
    assert result.n_slices == len(moved) - len(result.dropped)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"align": "warp"}, "align"),
        ({"align_reference": 9}, "align_reference"),
        ({"on_align_fail": "ignore"}, "on_align_fail"),
        ({"transforms": [np.eye(3)]}, "transforms"),
    ],
)
def test_alignment_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stacker.merge(np.zeros((3, 8, 8)), **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(1, 40), (2, 2), (5, 7, 3)])
def test_tiny_frames_are_stacked(method, shape):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (4, *shape), dtype=np.uint8)
    result = stacker.merge(stack, method=method)
    assert result.composite.shape == shape and result.depth.shape == shape[:2]


def _assert_same_result(tiled, whole):
    assert tiled.tiles > 1 and whole.tiles == 1
    for name in ("composite", "depth", "sharpness", "confidence"):
        np.testing.assert_array_equal(getattr(tiled, name), getattr(whole, name), err_msg=name)
    assert tiled.gains == whole.gains and tiled.crop == whole.crop


@pytest.mark.parametrize("method", ["depthmap", "argmax"])
@pytest.mark.parametrize("crop", [True, False])
def test_tiles_equal_the_whole_frame_when_aligning(misaligned, method, crop):
    moved = misaligned[0]
    whole = stacker.merge(moved, method=method, crop=crop)
    # 48 px tiles: every tile edge crosses texture, depth steps and, uncropped,
    # the border where some slices have no data.
    tiled = stacker.merge(moved, method=method, crop=crop, tile_size=48)
    _assert_same_result(tiled, whole)
    assert any(g != 1 for g in tiled.gains)  # gains were found in the tiled survey too


def test_pyramid_tiles_equal_the_whole_frame():
    # The pyramid's overlap is several coarse-level pixels: tiles need a wide frame.
    shape = (600, 1800)
    sharp = texture(shape, seed=7)
    height = height_field("terraces", shape, seed=7) * 3
    stack = render_stack(sharp, height, 4, blur_per_slice=1.5, seed=7).astype(np.float32) / 255
    whole = stacker.merge(stack, method="pyramid", align="none")
    tiled = stacker.merge(stack, method="pyramid", align="none", tile_size=512)
    _assert_same_result(tiled, whole)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiles_of_a_tiff_stack_equal_the_whole_frame(tmp_path, compression):
    # Uncompressed TIFF pages are memory-mapped (tiles read only their part);
    # compressed ones are decoded whole for every tile.
    import tifffile

    stack, _, _ = region_stack(5, shape=(120, 150), channels=3, dtype=np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="rgb", compression=compression)
    _assert_same_result(
        stacker.merge(path, align="none", tile_size=32), stacker.merge(path, align="none")
    )


@pytest.mark.parametrize("method", ["depthmap", "argmax"])
def test_tiles_bound_the_memory(write_slices, method):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    paths = write_slices(np.stack([plane, plane[::-1], plane[:, ::-1]] * 2))

    def peak(**kwargs):
        tracemalloc.start()
        stacker.merge(paths, method=method, align="none", threads=1, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak / plane.shape[0] / plane.shape[1]

    whole, tiled = peak(), peak(tile_size=128)
    # Measured, bytes per pixel: depthmap 72 whole, 52 tiled; argmax 35 and 26.
    # What remains tiled is full-frame: the outputs (15; depthmap's two depth scales
    # and their peaks, 8 more), one decoded slice (3), depthmap's depth resolution
    # (about 20) and composite, and a tile's state.
    assert tiled < 0.8 * whole, (tiled, whole)
    assert tiled < (56 if method == "depthmap" else 30), tiled


def test_tiled_progress_counts_the_survey_and_every_tile():
    stack, _, _ = region_stack(3, shape=(64, 64))
    calls = []
    stacker.merge(
        stack, align="none", tile_size=32, progress=lambda d, t, stage: calls.append((d, stage))
    )
    # survey (3 slices) + 4 tiles x 3 slices, twice (depth, then composite)
    assert [d for d, _ in calls] == list(range(1, 28))
    assert [s for _, s in calls] == ["measuring"] * 15 + ["compositing"] * 12


@pytest.mark.parametrize("tile_size", [0, 8, 20.5, "big"])
def test_bad_tile_size(tile_size):
    with pytest.raises(ValueError, match="tile_size"):
        stacker.merge(np.zeros((2, 32, 32)), tile_size=tile_size)


def test_frames_too_large_for_memory_are_tiled(monkeypatch):
    import stacker.plan

    stack, _, _ = region_stack(4, shape=(600, 700), channels=3)
    whole = stacker.merge(stack, align="none")
    # A machine with 4 MB to spare: a 0.4 MP frame's state does not fit in half of
    # it, 256 px tiles (the smallest chosen) do.
    monkeypatch.setattr(stacker.plan, "available_memory", lambda: 4 * 2**20)
    tiled = stacker.merge(stack, align="none")
    assert tiled.tiles == 9
    _assert_same_result(tiled, whole)


def test_threads_bound_opencv_during_the_merge_only(monkeypatch):
    import cv2

    seen = []
    real = stacker.focus.filter_wide

    def spy(*args, **kwargs):
        seen.append(cv2.getNumThreads())
        return real(*args, **kwargs)

    monkeypatch.setattr(stacker.focus, "filter_wide", spy)
    before = cv2.getNumThreads()
    stack, _, _ = region_stack()
    one = stacker.merge(stack, align="none", threads=1)
    assert set(seen) == {1} and cv2.getNumThreads() == before
    two = stacker.merge(stack, align="none", threads=2)
    assert 2 in seen and cv2.getNumThreads() == before
    np.testing.assert_array_equal(two.composite, one.composite)
