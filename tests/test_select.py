import numpy as np
import pytest

from stacker.select import (
    ArgmaxSelector,
    PeakTracker,
    peak_confidence,
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


@pytest.mark.parametrize(
    "others, noise, expected",
    [(0.0, 0.01, 1.0), (1.0, 0.01, 0.0), (0.5, 0.01, 0.5), (0.0, 1.0, 0.0)],
)
def test_peak_confidence_weighs_the_peak_against_the_rest_and_the_noise(others, noise, expected):
    # Peak 1 over four other slices at `others`: the excess must stand out of the noise
    # (full at 5 noise units) and be a good share of the peak (full at 70 %).
    peak = np.array([[1.0]])
    confidence = peak_confidence(peak, peak + 4 * others, 5, noise)
    np.testing.assert_allclose(confidence, [[expected]], atol=1e-6)


def test_peak_confidence_of_one_slice_is_whether_there_is_texture():
    np.testing.assert_array_equal(peak_confidence(np.array([[0.0, 0.2]]), None, 1, 0.1), [[0, 1]])
