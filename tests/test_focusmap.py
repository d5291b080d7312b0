import numpy as np
import pytest

from stacker.focusmap import focus_map, mask_in_focus, parse_colour, sketch


def half_sharp(dtype=np.uint8):
    rng = np.random.default_rng(0)
    img = np.full((40, 40, 3), 100, dtype=np.float64)
    img[:, :20] = rng.random((40, 20, 3)) * 255
    return img.astype(dtype)


def test_focus_map_is_relative_and_located():
    f = focus_map(half_sharp())
    assert f.dtype == np.float32 and f.shape == (40, 40)
    assert f.max() == pytest.approx(1.0)
    assert f[:, :12].mean() > 0.3 and f[:, 30:].max() == 0


def test_focus_map_of_flat_image_is_zero():
    assert focus_map(np.full((8, 8), 7, np.uint8)).max() == 0


def test_sketch_is_dark_where_sharp():
    np.testing.assert_array_equal(sketch(np.array([[0.0, 1.0, 0.5]])), [[255, 0, 128]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_keeps_sharp_pixels_and_paints_background(dtype):
    img = half_sharp(dtype)
    out = mask_in_focus(img, focus_map(img), threshold=0.1, background="black")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[:, :10], img[:, :10])
    assert (out[:, 30:] == 0).all()


def test_mask_expands_grey_to_rgb_with_colour():
    img = half_sharp()[..., 0]
    out = mask_in_focus(img, focus_map(img), background="#ff0000")
    assert out.shape == (40, 40, 3)
    assert tuple(out[0, 39]) == (255, 0, 0)


@pytest.mark.parametrize(
    "text,rgb", [("white", (255,) * 3), ("#0a0B0c", (10, 11, 12)), ("1, 2, 3", (1, 2, 3))]
)
def test_parse_colour(text, rgb):
    assert parse_colour(text) == rgb


@pytest.mark.parametrize("text", ["", "#12", "1,2", "300,0,0", "mauve"])
def test_parse_colour_rejects(text):
    with pytest.raises(ValueError, match="colour"):
        parse_colour(text)
