import numpy as np
import pytest

from stacker.resolve import regularize_depth, resolve_depth


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
    import stacker.resolve

    rng = np.random.default_rng(1)
    depth = rng.uniform(0, 8, shape).astype(np.float32)
    confidence = rng.random(shape).astype(np.float32)
    confidence[: shape[0] // 2, : shape[1] // 2] = 0  # a hole to fill
    strips = regularize_depth(depth, confidence)
    monkeypatch.setattr(stacker.resolve, "_STRIP", 2 * max(shape))
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
