import numpy as np
import pytest

from stacker.select import (
    ArgmaxSelector,
    PeakTracker,
    regularize_depth,
    resolve_depth,
    select_sharpest,
    subslice_peak,
)


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 7, 9), (12, 3, 4)])
def test_select_matches_argmax(shape):
    rng = np.random.default_rng(0)
    focus = rng.random(shape).astype(np.float32)
    index, value = select_sharpest(focus)
    np.testing.assert_array_equal(index, focus.argmax(axis=0))
    np.testing.assert_array_equal(value, focus.max(axis=0))
    assert index.dtype == np.uint16


def test_ties_go_to_lower_index():
    focus = np.zeros((4, 2, 2), np.float32)
    focus[1:, 0, 0] = 3.0  # slices 1, 2, 3 tie
    index, _ = select_sharpest(focus)
    np.testing.assert_array_equal(index, [[1, 0], [0, 0]])


def test_update_reports_winners():
    sel = ArgmaxSelector((1, 3))
    assert sel.update(np.array([[1.0, 2.0, 3.0]])).all()
    won = sel.update(np.array([[0.5, 2.0, 4.0]]))
    np.testing.assert_array_equal(won, [[False, False, True]])
    assert sel.count == 2


def test_update_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        ArgmaxSelector((2, 2)).update(np.zeros((3, 3)))


def test_select_rejects_wrong_ndim():
    with pytest.raises(ValueError, match=r"\(Z, M, N\)"):
        select_sharpest(np.zeros((3, 3)))


def _brute_force_neighbours(focus):
    index = focus.argmax(axis=0)
    rows, cols = np.indices(index.shape)
    before = np.where(index > 0, focus[np.maximum(index - 1, 0), rows, cols], np.nan)
    last = len(focus) - 1
    after = np.where(index < last, focus[np.minimum(index + 1, last), rows, cols], np.nan)
    return index, before, after


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_peak_tracker_keeps_the_neighbours_of_the_peak(n):
    focus = np.random.default_rng(n).random((n, 7, 6)).astype(np.float32)
    tracker = PeakTracker((7, 6))
    for plane in focus:
        tracker.update(plane)
    index, before, after = _brute_force_neighbours(focus)
    np.testing.assert_array_equal(tracker.index, index)
    np.testing.assert_array_equal(tracker.before, before.astype(np.float32))
    np.testing.assert_array_equal(tracker.after, after.astype(np.float32))
    np.testing.assert_allclose(tracker.total, focus.sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("peak", [2.0, 2.3, 1.55, 3.49])
def test_subslice_peak_recovers_known_fractional_peak(peak):
    z = np.arange(6.0)
    curve = 5 * np.exp(-((z - peak) ** 2) / (2 * 1.3**2))
    k = int(curve.argmax())
    offset, width = subslice_peak(*(np.array([[curve[k + d]]]) for d in (-1, 0, 1)))
    assert k + offset[0, 0] == pytest.approx(peak, abs=1e-4)
    assert width[0, 0] == pytest.approx(1.3, abs=1e-3)


def test_subslice_peak_without_neighbour_or_on_flat_curve():
    nan = np.array([[np.nan, 1.0]])
    flat = np.array([[1.0, 1.0]])
    offset, width = subslice_peak(nan, flat, flat)
    np.testing.assert_array_equal(offset, [[0, 0]])
    assert np.isinf(width).all()


def test_regularize_fills_flat_area_from_confident_surroundings():
    depth = np.fromfunction(lambda r, c: c / 10, (60, 80), dtype=np.float32)
    noisy = depth.copy()
    confidence = np.ones_like(depth)
    noisy[20:40, 30:50] = np.random.default_rng(0).uniform(0, 8, (20, 20))
    confidence[20:40, 30:50] = 0
    out = regularize_depth(noisy, confidence)
    assert np.abs(out - depth)[20:40, 30:50].max() < 0.6
    assert np.abs(out - depth)[:10].max() < 0.1  # 0.08 at the corners, from smoothing


def test_regularize_keeps_depth_steps():
    depth = np.zeros((40, 40), np.float32)
    depth[:, 20:] = 6
    out = regularize_depth(depth, np.ones_like(depth))
    np.testing.assert_array_equal(np.rint(out), depth)
    np.testing.assert_array_equal(out[:, [19, 20]], depth[:, [19, 20]])


def test_regularize_validates_shapes():
    with pytest.raises(ValueError, match="shapes"):
        regularize_depth(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.mark.parametrize("shape", [(300, 50), (513, 97), (1, 40), (3, 3)])
def test_regularize_in_strips_equals_one_strip(monkeypatch, shape):
    import stacker.select

    rng = np.random.default_rng(1)
    depth = rng.uniform(0, 8, shape).astype(np.float32)
    confidence = rng.random(shape).astype(np.float32)
    confidence[: shape[0] // 2, : shape[1] // 2] = 0  # a hole to fill
    strips = regularize_depth(depth, confidence)
    monkeypatch.setattr(stacker.select, "_STRIP", 2 * max(shape))
    np.testing.assert_array_equal(strips, regularize_depth(depth, confidence))


def _two_scales(shape=(9, 60)):
    """Fine depth 5 in a band of spill beside an edge at depth 0; the coarse scale sees 0."""
    fine = np.zeros(shape, np.float32)
    fine[:, 31:37] = 5
    peak = np.full(shape, 0.5, np.float32)
    peak[:, 29:31] = 4  # the edge
    peak[:, 31:37] = 0.05  # its spill
    return fine, np.zeros(shape, np.float32), peak


def test_resolve_depth_replaces_spill_by_the_depth_around_it():
    fine, coarse, peak = _two_scales()
    depth, confidence = resolve_depth(
        fine, coarse, np.ones_like(fine), fine_peak=peak, coarse_peak=peak
    )
    np.testing.assert_allclose(depth[:, 31:37], 0, atol=1e-3)
    assert (confidence[:, 31:37] == 0).all() and (confidence[:, :20] == 1).all()


def test_resolve_depth_keeps_fine_depth_of_texture_of_its_own():
    # Strong texture at depth 5 beside the edge, where the coarse scale still says 0:
    # a real depth step, not spill.
    fine, coarse, peak = _two_scales((40, 100))
    fine[:, 31:] = 5
    coarse[:, 37:] = 5
    peak[:, 31:] = 3
    depth, _ = resolve_depth(fine, coarse, np.ones_like(fine), fine_peak=peak, coarse_peak=peak)
    # (regularize_depth smooths by up to half a slice beside a step)
    np.testing.assert_allclose(depth[:, 32:37], 5, atol=0.5)


def test_resolve_depth_validates_shapes():
    fine, coarse, peak = _two_scales()
    with pytest.raises(ValueError, match="coarse_peak"):
        resolve_depth(fine, coarse, fine, fine_peak=peak, coarse_peak=peak[:, :5])
