"""Registration: known transforms recovered from differently blurred synthetic slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import focused
from scipy import ndimage

from stacker._opencv import opencv_threads
from stacker.align import (
    MIN_MATCH,
    MODELS,
    _warp,
    common_crop,
    estimate_stack_transforms,
    estimate_transform,
    load_transforms,
    save_transforms,
    warp,
)
from stacker.synthetic import height_field, render_stack, texture

SHAPE = (240, 320)


def similarity(shape, *, scale=1.0, degrees=0.0, shift=(0.0, 0.0), affine=None) -> np.ndarray:
    """Reference-to-moving matrix: scale and rotation about the frame centre, then a shift."""
    a = np.deg2rad(degrees)
    lin = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if affine is not None:
        lin = lin @ np.asarray(affine)
    centre = (np.array(shape[:2]) - 1) / 2
    out = np.eye(3)
    out[:2, :2], out[:2, 2] = lin, centre - lin @ centre + np.asarray(shift)
    return out


def moved(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The moving image whose content at ``matrix @ x`` is ``image`` at ``x``."""
    inv = np.linalg.inv(matrix)
    return ndimage.affine_transform(image, inv[:2, :2], offset=inv[:2, 2], order=3, mode="reflect")


def rms_error(estimate: np.ndarray, truth: np.ndarray, shape) -> float:
    """RMS distance, in pixels over a grid of the frame, between two matrices' mappings."""
    r, c = np.mgrid[0 : shape[0] : 8, 0 : shape[1] : 8]
    pts = np.stack([r.ravel(), c.ravel(), np.ones(r.size)])
    return float(np.sqrt((((estimate - truth) @ pts)[:2] ** 2).sum(axis=0).mean()))


@pytest.fixture(scope="module")
def sharp() -> np.ndarray:
    return texture(SHAPE, seed=4).astype(np.float64)


CASES = {
    "translation": [dict(shift=(7.3, -12.6)), dict(shift=(-30.2, 41.5))],
    "similarity": [
        dict(scale=1.03, degrees=0.8, shift=(4.2, -6.7)),
        dict(scale=0.96, degrees=-1.0, shift=(-9.5, 3.1)),
        dict(scale=1.15, degrees=12.0, shift=(2.0, 5.0)),
    ],
    "affine": [
        dict(scale=1.02, degrees=0.5, shift=(3.3, 2.2), affine=[[1.01, 0.01], [-0.008, 0.99]])
    ],
}


@pytest.mark.parametrize(
    "model, truth",
    [pytest.param(m, t, id=f"{m}-{i}") for m, cases in CASES.items() for i, t in enumerate(cases)],
)
@pytest.mark.parametrize("sigmas", [(0.0, 3.0), (2.0, 0.5)])
def test_estimate_transform_recovers_known_motion(sharp, model, truth, sigmas):
    rng = np.random.default_rng(1)
    matrix = similarity(SHAPE, **truth)
    reference = focused(sharp, sigmas[0], rng)
    moving = focused(moved(sharp, matrix), sigmas[1], rng)
    estimate, quality = estimate_transform(reference, moving, model=model)
    assert rms_error(estimate, matrix, SHAPE) < 0.2  # measured <= 0.07
    assert 0.5 < quality <= 1
    assert estimate.dtype == np.float64 and estimate.shape == (3, 3)


def test_estimate_transform_from_initial(sharp):
    matrix = similarity(SHAPE, scale=1.02, degrees=0.5, shift=(3.0, -2.0))
    moving = moved(sharp, matrix)
    guess = similarity(SHAPE, scale=1.01, shift=(2.0, -1.0))
    estimate, _ = estimate_transform(sharp, moving, initial=guess)
    assert rms_error(estimate, matrix, SHAPE) < 0.05


@pytest.mark.parametrize("case", ["noise", "flat"])
def test_no_match_gives_low_quality(case):
    rng = np.random.default_rng(2)
    reference = rng.random(SHAPE)
    moving = np.full(SHAPE, 0.5) if case == "flat" else rng.random(SHAPE)
    estimate, quality = estimate_transform(reference, moving)
    assert quality < 0.15  # a true match scores > 0.5 even across strong defocus
    if case == "flat":
        np.testing.assert_array_equal(estimate, np.eye(3))


def test_model_none_is_identity(sharp):
    estimate, quality = estimate_transform(sharp, sharp, model="none")
    np.testing.assert_array_equal(estimate, np.eye(3))
    assert quality == pytest.approx(1.0)


class CountingStack:
    """A lazily 'decoded' stack that counts reads, as stacker.io.Stack would decode files."""

    def __init__(self, slices):
        self.slices, self.reads = slices, [0] * len(slices)

    def __len__(self):
        return len(self.slices)

    def __getitem__(self, k):
        self.reads[k] += 1
        return self.slices[k]


@pytest.fixture(scope="module")
def shifted_stack():
    """8 RGB uint8 slices: scale 0-4 %, shifts to +-20 px, rotation to +-1 deg, mixed focus."""
    shape = (288, 384)
    rgb = texture(shape, channels=3, seed=5).astype(np.float64)
    rng = np.random.default_rng(3)
    truths, slices = [], []
    for k, sigma in enumerate([3.0, 2.0, 1.0, 0.0, 0.5, 1.5, 2.5, 3.0]):
        matrix = similarity(
            shape, scale=1 + 0.04 * k / 7, degrees=rng.uniform(-1, 1), shift=rng.uniform(-20, 20, 2)
        )
        planes = [focused(moved(rgb[..., c], matrix), sigma, rng) for c in range(3)]
        image = np.clip(np.rint(np.stack(planes, axis=-1) * 255), 0, 255).astype(np.uint8)
        truths.append(matrix)
        slices.append(image)
    return slices, truths


def test_stack_transforms_known_motion(shifted_stack):
    slices, truths = shifted_stack
    stack = CountingStack(slices)
    calls = []
    matrices, qualities = estimate_stack_transforms(
        stack, progress=lambda done, total: calls.append((done, total))
    )
    ref = len(slices) // 2
    shape = slices[0].shape
    errors = [
        rms_error(m, t @ np.linalg.inv(truths[ref]), shape)
        for m, t in zip(matrices, truths, strict=True)
    ]
    assert max(errors) < 0.3, errors  # measured <= 0.05
    np.testing.assert_array_equal(matrices[ref], np.eye(3))
    assert qualities[ref] == 1 and min(qualities) > 0.5
    assert stack.reads == [1] * len(slices)  # every slice decoded exactly once
    assert calls[-1] == (8, 8) and len(calls) == 8


@pytest.mark.parametrize("reference", [0, 3, 7])
def test_stack_transforms_same_on_threads(shifted_stack, reference):
    # Below and above the reference, two walks run at once on threads: the
    # transforms must not change, and every slice is still read once.
    slices, _ = shifted_stack
    one = estimate_stack_transforms(slices, reference=reference, max_size=192)
    stack, calls = CountingStack(slices), []
    two = estimate_stack_transforms(
        stack,
        reference=reference,
        max_size=192,
        threads=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    for a, b in zip(one[0], two[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert one[1] == two[1]
    assert stack.reads == [1] * len(slices)
    assert calls == [(k, len(slices)) for k in range(1, len(slices) + 1)]


def test_transform_same_on_any_number_of_opencv_threads():
    # OpenCV splits a frame into one band of rows per thread. Registration used
    # to resample with cv2.warpAffine, whose last bits depend on where a band
    # starts: 4 of these 6 pairs then gave transforms differing by 5e-13 to 2e-10.
    ref = texture((384, 512), seed=1).astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(6):
        truth = similarity(
            ref.shape,
            scale=rng.uniform(0.98, 1.02),
            degrees=rng.uniform(-1, 1),
            shift=rng.uniform(-3, 3, 2),
        )
        mov = moved(ref, truth)
        found = []
        for threads in (1, 2, 3, 4):
            with opencv_threads(threads):
                found.append(estimate_transform(ref, mov))
        for matrix, quality in found[1:]:
            assert matrix.tobytes() == found[0][0].tobytes() and quality == found[0][1]


def _page_behind_an_object(seed: int, shape=(192, 256), n=24) -> list[np.ndarray]:
    """A still stack: a textured object coming into focus over a flat page with sparse print."""
    rng = np.random.default_rng(seed)
    page = np.full(shape, 0.85, np.float32)
    rows, cols = np.indices(shape)
    for _ in range(40):
        r, c, half = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(3, 12)
        page[(abs(rows - r) < 2) & (abs(cols - c) < half)] = 0.1
    height = height_field("object", shape, seed=seed)
    sharp = np.where(height > 0.5, texture(shape, seed=seed), page)
    stack = render_stack(sharp, 0.3 + height * (n - 1.6), n, blur_per_slice=1.5, seed=seed)
    return list(stack)


@pytest.mark.parametrize("seed", [0, 5])
def test_a_still_object_coming_into_focus_is_not_motion(seed):
    # Its blur shrinks as it comes into focus, which looks like a zoom of a few tenths of
    # a percent to the pairwise fit; with a 25 % bar for a motion's gain over staying
    # still, both seeds registered 4.6 and 6.9 px of false motion.
    slices = _page_behind_an_object(seed)
    matrices, _ = estimate_stack_transforms(slices, reference=len(slices) // 2)
    for matrix in matrices:
        np.testing.assert_array_equal(matrix, np.eye(3))


def test_stack_transforms_error_in_a_walk_on_threads(shifted_stack):
    slices, _ = shifted_stack
    broken = list(slices)
    broken[2] = broken[2][:-1]  # in the walk below the reference, on the worker thread
    with pytest.raises(ValueError, match="slice 2"):
        estimate_stack_transforms(broken, reference=4, max_size=192, threads=2)


def test_stack_transforms_downscaled_and_robust(shifted_stack):
    slices, truths = shifted_stack
    slices = list(slices[2:6])
    slices[1] = np.full_like(slices[1], 128)  # a blank slice must not break the chain
    matrices, qualities = estimate_stack_transforms(slices, reference=2, max_size=192)
    truth0 = truths[2] @ np.linalg.inv(truths[4])
    assert rms_error(matrices[0], truth0, slices[0].shape) < 0.3  # at half resolution
    assert qualities[1] < MIN_MATCH and qualities[0] > 0.5


def test_stack_transforms_bad_arguments(shifted_stack):
    slices, _ = shifted_stack
    with pytest.raises(ValueError, match="model"):
        estimate_stack_transforms(slices, model="rigid")
    with pytest.raises(ValueError, match="reference"):
        estimate_stack_transforms(slices, reference=8)
    with pytest.raises(ValueError, match="max_size"):
        estimate_stack_transforms(slices, max_size=10)
    with pytest.raises(ValueError, match="slice 1"):
        estimate_stack_transforms([slices[0], slices[1][:-1]], reference=0)
    with pytest.raises(ValueError, match="moving"):
        estimate_transform(np.zeros((32, 32)), np.zeros((32, 40)))
    assert MODELS == ("none", "translation", "similarity", "affine")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_warp_identity_and_whole_pixel_shift_are_exact(dtype):
    rng = np.random.default_rng(4)
    image = (rng.random((20, 30, 3)) * (255 if dtype == np.uint8 else 1000)).astype(dtype)
    out, valid = warp(image, np.eye(3))
    np.testing.assert_array_equal(out, image)
    assert out.dtype == dtype and valid.all()
    shift = similarity(image.shape, shift=(3, -2))
    out, valid = warp(image, shift)
    np.testing.assert_array_equal(out[:-3, 2:], image[3:, :-2])
    assert valid[:-3, 2:].all() and not valid[-3:].any() and not valid[:, :2].any()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_warp_keeps_dtype_and_matches_scipy(dtype):
    image = texture((40, 50), channels=3, seed=1)
    if dtype != np.float32:
        image = np.rint(image * np.iinfo(dtype).max).astype(dtype)
    matrix = similarity(image.shape, scale=1.05, degrees=3, shift=(1.5, -0.7))
    out, valid = warp(image, matrix, output_shape=(30, 45), interpolation="linear")
    assert out.dtype == dtype and out.shape == (30, 45, 3) and valid.shape == (30, 45)
    src = matrix[:2, :2] @ np.indices((30, 45)).reshape(2, -1) + matrix[:2, 2, None]
    # OpenCV samples at positions rounded to 1/32 px: between the grid points below
    # and above the exact one.
    grid = np.indices((2, 2)).reshape(2, -1)
    expect = np.stack(
        [
            ndimage.map_coordinates(
                image[..., 1].astype(np.float64), (np.floor(src * 32) + g[:, None]) / 32, order=1
            ).reshape(30, 45)
            for g in grid.T
        ]
    )
    # Its bilinear weights are float32 (8-bit: 15-bit fixed point), scipy's float64.
    tolerance = 0.5 + 1e-4 * (np.iinfo(dtype).max if dtype != np.float32 else 1)
    low, high = expect.min(0) - tolerance, expect.max(0) + tolerance
    assert ((out[..., 1] >= low) & (out[..., 1] <= high))[valid].all()
    inside = np.all((src >= 0) & (src <= np.array([[39], [49]])), axis=0).reshape(30, 45)
    np.testing.assert_array_equal(valid, inside)


def test_common_crop_of_a_shift_is_exact():
    shift = similarity((100, 80), shift=(5, -3))
    assert common_crop([np.eye(3), shift], (100, 80, 3)) == (slice(0, 95), slice(3, 80))
    both = similarity((100, 80), shift=(-4, 6))
    assert common_crop([shift, both], (100, 80)) == (slice(4, 95), slice(3, 74))


def test_common_crop_is_covered_by_every_slice():
    shape = (60, 90)
    matrices = [
        similarity(shape, scale=s, degrees=d, shift=t)
        for s, d, t in [(1.04, 1.0, (2, -3)), (0.97, -2.0, (-1, 4)), (1.0, 0.0, (0.5, 0.5))]
    ]
    rows, cols = common_crop(matrices, shape)
    for matrix in matrices:
        assert warp(np.zeros(shape), matrix)[1][rows, cols].all()
    assert (rows.stop - rows.start) * (cols.stop - cols.start) > 0.75 * shape[0] * shape[1]
    with pytest.raises(ValueError, match="common"):
        common_crop([np.eye(3), similarity(shape, shift=(70, 0))], shape)


def test_save_load_roundtrip(tmp_path):
    matrices = [
        np.eye(3),
        similarity((100, 80), scale=1.0123456789, degrees=0.3, shift=(1 / 3, -2)),
    ]
    path = tmp_path / "transforms.json"
    save_transforms(
        path, matrices, names=["a.jpg", "b.jpg"], shape=(100, 80, 3), model="similarity"
    )
    loaded = load_transforms(path)
    assert len(loaded) == 2
    for a, b in zip(loaded, matrices, strict=True):
        np.testing.assert_array_equal(a, b)  # exact: JSON floats are written with repr
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["model"] == "similarity" and doc["shape"] == [100, 80, 3]
    assert [s["name"] for s in doc["slices"]] == ["a.jpg", "b.jpg"]
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="transforms.json"):
        load_transforms(path)


@pytest.mark.parametrize(
    "matrix",
    [
        np.array([[1.02, -0.01, 5.3], [0.012, 0.99, -7.6], [0, 0, 1]]),  # resampled
        np.array([[1.0, 0, 3], [0, 1, -4], [0, 0, 1]]),  # whole-pixel shift
        np.array([[1.0, 0, -40], [0, 1, 250], [0, 0, 1]]),  # mostly outside the slice
    ],
)
@pytest.mark.parametrize(
    "window", [((0, 0), (100, 150)), ((120, 200), (180, 200)), ((250, 350), (50, 50))]
)
def test_warping_a_window_equals_the_window_of_the_warp(matrix, window):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    whole, valid = warp(image, matrix)
    origin, shape = window
    part, part_valid = warp(image, matrix, origin=origin, output_shape=shape)
    inside = (slice(origin[0], origin[0] + shape[0]), slice(origin[1], origin[1] + shape[1]))
    np.testing.assert_array_equal(part, whole[inside])
    np.testing.assert_array_equal(part_valid, valid[inside])


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_frames_too_large_for_opencv_are_warped_by_pillow(monkeypatch, dtype):
    image = (texture((60, 80), channels=3, seed=2) * 200).astype(dtype)
    matrix = similarity(image.shape, scale=1.03, degrees=2, shift=(2.3, -4.1))
    fast, valid = warp(image, matrix)
    monkeypatch.setattr(_warp, "_CV_LIMIT", 50)
    slow, slow_valid = warp(image, matrix)
    assert slow.dtype == fast.dtype == dtype
    np.testing.assert_array_equal(slow_valid, valid)
    # Pillow's bicubic kernel is softer than OpenCV's Lanczos, but both sample the
    # same positions: a pixel's misplacement would differ by tens of levels here.
    difference = np.abs(slow.astype(float) - fast)[valid]
    assert difference.mean() < 2 and difference.max() < 16, (difference.mean(), difference.max())


def test_warp_far_outside_the_slice_repeats_its_corner():
    image = (texture((50, 60), channels=3, seed=3) * 255).astype(np.uint8)
    matrix = np.array([[1.0, 0, -40000.3], [0, 1.001, 70000.2], [0, 0, 1]])
    out, valid = warp(image, matrix)
    assert not valid.any()
    np.testing.assert_array_equal(out, np.broadcast_to(image[0, -1], out.shape))


def test_warp_reads_only_the_window_it_needs():
    class Recorder(np.ndarray):
        """An array that remembers the index of every read."""

        reads: list = []

        def __getitem__(self, index):
            Recorder.reads.append(index)
            return np.asarray(self).__getitem__(index)

    image = np.zeros((1000, 1000), np.float32).view(Recorder)
    shift = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    warp(image, shift, origin=(500, 600), output_shape=(20, 30))
    rows, cols = Recorder.reads[-1]
    # The window and the Lanczos kernel's reach, four pixels each side.
    assert rows.stop - rows.start <= 20 + 10 and cols.stop - cols.start <= 30 + 10
    assert 500 - 5 <= rows.start and 600 - 5 <= cols.start
