import numpy as np
import pytest

from stacker.depth import depth_preview, encode_depth


def test_encode_index_rounds_to_uint16():
    out = encode_depth(np.array([[0.2, 1.6, 3.0]]), "index")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, [[0, 2, 3]])


def test_encode_float_keeps_fraction():
    out = encode_depth(np.array([[0.25, 2.5]]), "float")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.25, 2.5]])


def test_encode_rejects_unknown_format():
    with pytest.raises(ValueError, match="depth_format"):
        encode_depth(np.zeros((2, 2)), "jpeg")


def test_preview_colours_follow_depth_and_scale_is_added():
    depth = np.tile(np.linspace(0, 9, 200), (120, 1))
    out = depth_preview(depth, 10)
    assert out.dtype == np.uint8 and out.shape[0] == 120 and out.shape[1] > 200
    # viridis brightens from the first slice (dark purple) to the last (yellow)
    lum = out[..., :200, :].astype(float).sum(axis=-1)[60]
    assert lum[0] < lum[100] < lum[199]
    assert tuple(out[60, 0]) == (68, 1, 84) and tuple(out[60, 199]) == (253, 231, 37)
    assert not np.array_equal(out[:, 200:], np.full_like(out[:, 200:], 255))


@pytest.mark.parametrize("args", [(np.zeros(5), 3), (np.zeros((4, 4)), 0)])
def test_preview_validates(args):
    with pytest.raises(ValueError):
        depth_preview(*args)
