import numpy as np
import pytest

from stacker.select import ArgmaxSelector, select_sharpest


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
