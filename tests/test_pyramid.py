import numpy as np
import pytest

from stacker.pyramid import PyramidFusion, laplacian_pyramid, pyramid_levels, reconstruct


@pytest.mark.parametrize("shape", [(33, 47), (64, 64, 3), (17, 120)])
def test_pyramid_reconstructs_exactly(shape):
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    levels = pyramid_levels(shape, coarsest=4)
    pyr = laplacian_pyramid(img, levels)
    assert len(pyr) == levels + 1
    np.testing.assert_allclose(reconstruct(pyr), img, atol=1e-5)


def test_fusion_of_identical_slices_returns_the_slice():
    img = np.random.default_rng(1).random((40, 56, 3)).astype(np.float32)
    focus = np.random.default_rng(2).random((40, 56)).astype(np.float32)
    fusion = PyramidFusion(img.shape)
    for _ in range(5):
        fusion.update(img, focus)
    np.testing.assert_allclose(fusion.result(), img, atol=1e-5)


def test_fusion_takes_detail_from_the_sharper_slice():
    rng = np.random.default_rng(3)
    sharp = rng.random((64, 64)).astype(np.float32)
    flat = np.full_like(sharp, sharp.mean())
    fusion = PyramidFusion(sharp.shape)
    fusion.update(flat, np.zeros_like(sharp))
    fusion.update(sharp, np.ones_like(sharp))
    out = fusion.result()
    # fine detail from the sharp slice, the mean from both (which agree)
    assert np.corrcoef(out.ravel(), sharp.ravel())[0, 1] > 0.95
    assert out.min() >= 0 and out.max() <= 1


def test_result_needs_a_slice():
    with pytest.raises(ValueError, match="no slices"):
        PyramidFusion((8, 8)).result()


def test_result_clips_to_a_given_range():
    rng = np.random.default_rng(2)
    fusion = PyramidFusion((32, 32), levels=3)
    for _ in range(2):
        fusion.update(rng.random((32, 32)).astype(np.float32), rng.random((32, 32)))
    own = fusion.result()
    assert own.min() >= fusion.low and own.max() <= fusion.high
    clipped = fusion.result((0.25, 0.75))
    np.testing.assert_array_equal(clipped, np.clip(own, 0.25, 0.75))
