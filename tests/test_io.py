import re

import imagecodecs
import numpy as np
import pytest
import tifffile

from stacker.io import (
    StackError,
    StackWarning,
    natural_key,
    open_stack,
    read_image,
)
from stacker.outputs import write_image
from stacker.synthetic import texture


def test_natural_key_orders_numbers_by_value():
    names = ["s10.png", "s2.png", "S1.png", "s2b.png"]
    assert sorted(names, key=natural_key) == ["S1.png", "s2.png", "s2b.png", "s10.png"]


@pytest.mark.parametrize("fmt", ["png", "tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_write_read_roundtrip(tmp_path, fmt, dtype, channels):
    rng = np.random.default_rng(0)
    shape = (7, 9) if channels is None else (7, 9, channels)
    img = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    write_image(tmp_path / f"a.{fmt}", img)
    np.testing.assert_array_equal(read_image(tmp_path / f"a.{fmt}"), img)


def test_float_tiff_roundtrip(tmp_path):
    img = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    write_image(tmp_path / "f.tif", img)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), img)


def test_jpeg_roundtrip_is_close(tmp_path):
    img = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    write_image(tmp_path / "a.jpg", np.dstack([img] * 3))
    back = read_image(tmp_path / "a.jpg")
    assert back.shape == (64, 64, 3) and np.abs(back.astype(int) - img[..., None]).max() < 8


def test_format_detected_from_content_not_name(tmp_path):
    img = np.full((8, 8, 3), 90, np.uint8)
    write_image(tmp_path / "a.jpg", img)
    (tmp_path / "a.jpg").rename(tmp_path / "really_a_jpeg.png")
    assert read_image(tmp_path / "really_a_jpeg.png").shape == (8, 8, 3)


def test_alpha_is_dropped_with_warning(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.warns(StackWarning, match="alpha"):
        assert read_image(tmp_path / "a.tif").shape == (4, 4, 3)


@pytest.mark.parametrize("channels", [None, 3])
def test_multipage_tiff_is_a_stack(tmp_path, channels):
    shape = (6, 10, 12) if channels is None else (6, 10, 12, channels)
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "stack.tif", data, photometric="rgb" if channels else None)
    stack = open_stack(tmp_path / "stack.tif")
    assert len(stack) == 6 and stack.shape == shape[1:] and stack.dtype == np.uint16
    for k, plane in enumerate(stack):
        np.testing.assert_array_equal(plane, data[k])
    assert stack.names[2] == "stack.tif[page 2]"


def test_planar_rgb_tiff_is_interleaved(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (3, 5, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", data, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), np.moveaxis(data, 0, -1))


def test_folder_is_read_in_natural_order(tmp_path):
    for k in (10, 2, 1):
        write_image(tmp_path / f"z{k}.png", np.full((3, 3), k, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    stack = open_stack(tmp_path)
    assert stack.names == ["z1.png", "z2.png", "z10.png"]
    assert [int(p[0, 0]) for p in stack] == [1, 2, 10]


def test_non_natural_list_warns_and_sorts_unless_given(tmp_path):
    paths = []
    for k in (10, 2):
        paths.append(tmp_path / f"z{k}.png")
        write_image(paths[-1], np.full((3, 3), k, np.uint8))
    with pytest.warns(StackWarning, match="natural order"):
        assert open_stack(paths).names == ["z2.png", "z10.png"]
    assert open_stack(paths, order="given").names == ["z10.png", "z2.png"]


def test_array_inputs():
    stack = open_stack(np.zeros((3, 4, 5, 3), np.uint8))
    assert len(stack) == 3 and stack.shape == (4, 5, 3)
    assert open_stack([np.zeros((4, 5)), np.ones((4, 5))]).shape == (4, 5)


def test_shape_mismatch_names_file_and_both_shapes(tmp_path):
    write_image(tmp_path / "z1.png", np.zeros((4, 5), np.uint8))
    write_image(tmp_path / "z2.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(StackError, match=r"z2\.png.*\(4, 6\).*\(4, 5\)"):
        list(open_stack(tmp_path))


def test_channel_mismatch(tmp_path):
    write_image(tmp_path / "z1.png", np.zeros((4, 5), np.uint8))
    write_image(tmp_path / "z2.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(StackError, match=r"z2\.png.*\(4, 5, 3\)"):
        list(open_stack(tmp_path))


def test_bit_depth_mismatch(tmp_path):
    write_image(tmp_path / "z1.png", np.zeros((4, 5), np.uint8))
    write_image(tmp_path / "z2.png", np.zeros((4, 5), np.uint16))
    with pytest.raises(StackError, match=r"z2\.png.*uint16"):
        list(open_stack(tmp_path))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"hello, I am text", "not a PNG, JPEG or TIFF image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "cannot read"),
        (b"", "file is empty"),
    ],
)
def test_unreadable_files(tmp_path, content, match):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(StackError, match=match):
        read_image(tmp_path / "bad.png")


def test_truncated_png(tmp_path):
    write_image(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(StackError, match=r"a\.png: cannot read"):
        read_image(tmp_path / "a.png")


def test_nan_in_float_tiff(tmp_path):
    img = np.zeros((4, 4), np.float32)
    img[1, 1] = np.nan
    tifffile.imwrite(tmp_path / "n.tif", img)
    with pytest.raises(StackError, match="NaN"):
        read_image(tmp_path / "n.tif")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: [], "no input"),
        (lambda p: [p / "missing.png"], "no such file"),
        (lambda p: [p], "no images"),
    ],
)
def test_empty_and_missing_inputs(tmp_path, make, match):
    with pytest.raises(StackError, match=match):
        open_stack(make(tmp_path))


def test_open_stack_rejects_bad_order():
    with pytest.raises(ValueError, match="order"):
        open_stack(np.zeros((2, 3, 3)), order="random")


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    from PIL import Image

    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (16, 1))
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb = read_image(tmp_path / "c.jpg")
    assert rgb.shape == (16, 25, 3)
    assert np.abs(rgb[..., 1].astype(int) - grey).max() < 12


@pytest.mark.parametrize(
    "kwargs, mapped",
    [
        (dict(), True),
        (dict(planarconfig="separate"), True),
        (dict(compression="zlib"), False),
    ],
)
def test_window_memory_maps_uncompressed_tiff(tmp_path, kwargs, mapped):
    stack = np.arange(2 * 20 * 30 * 3, dtype=np.uint16).reshape(2, 20, 30, 3)
    path = tmp_path / "s.tif"
    data = np.moveaxis(stack, -1, 1) if "planarconfig" in kwargs else stack
    tifffile.imwrite(path, data, photometric="rgb", **kwargs)
    opened = open_stack(path)
    for k in range(2):
        window = opened.window(k)
        assert isinstance(window, np.memmap) == mapped
        np.testing.assert_array_equal(window, stack[k])
        np.testing.assert_array_equal(window[3:7, 10:20], opened[k][3:7, 10:20])


def test_window_checks_the_slice_like_reading_it(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 30), np.uint16))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((20, 31), np.uint16))
    opened = open_stack(tmp_path)
    with pytest.raises(StackError, match="b.tif: shape"):
        opened.window(1)


def test_grey_reads_a_jpegs_luma_and_other_slices_whole(tmp_path):
    from stacker.focus import to_gray

    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 40, (3, 40, 56, 3)), 0, 255).astype(np.uint8)
    for i, image in enumerate(rgb):
        write_image(tmp_path / f"z{i}.jpg", image, quality=95)
    stack = open_stack(tmp_path)
    luma = stack.grey(1)
    assert luma.shape == (40, 56) and luma.dtype == np.uint8
    # The JPEG's own Y channel: the luma of its decoded RGB, up to rounding.
    assert np.abs(to_gray(luma) - to_gray(stack[1])).mean() < 1 / 255
    write_image(tmp_path / "p.png", rgb[0])
    np.testing.assert_array_equal(open_stack(tmp_path / "p.png").grey(0), rgb[0])
    np.testing.assert_array_equal(open_stack(rgb).grey(2), rgb[2])


def test_grey_of_a_cmyk_jpeg_falls_back_to_the_full_decode(tmp_path):
    from PIL import Image

    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (16, 1))
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert open_stack(tmp_path / "c.jpg").grey(0).shape == (16, 25, 3)


def test_grey_checks_the_shape(tmp_path):
    write_image(tmp_path / "z1.jpg", np.zeros((8, 10, 3), np.uint8))
    write_image(tmp_path / "z2.jpg", np.zeros((8, 12, 3), np.uint8))
    with pytest.raises(StackError, match=r"z2\.jpg.*\(8, 12\).*\(8, 10\)"):
        open_stack(tmp_path).grey(1)


# Pillow's options for the three kinds of JPEG stream: one sequential scan, the
# same with restart markers every 4 MCUs, and progressive scans.
JPEG_KINDS = {
    "baseline": {},
    "restarts": {"restart_marker_blocks": 4},
    "progressive": {"progressive": True},
}


def _jpeg(path, kind="baseline") -> bytes:
    """A 96 x 128 RGB texture saved as a JPEG of `kind`; its bytes."""
    from PIL import Image

    image = (texture((96, 128), channels=3, seed=3) * 255).astype(np.uint8)
    Image.fromarray(image).save(path, quality=90, **JPEG_KINDS[kind])
    return path.read_bytes()


def _reads(tmp_path, damaged: bytes) -> dict:
    """Every way a slice is read, on a stack whose second slice is `damaged`."""
    (tmp_path / "bad.jpg").write_bytes(damaged)
    stack = open_stack([tmp_path / "good.jpg", tmp_path / "bad.jpg"], order="given")
    return {
        "read_image": lambda: read_image(tmp_path / "bad.jpg"),
        "slice": lambda: stack[1],
        "luma": lambda: stack.grey(1),
    }


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_whole_jpegs_decode_to_the_decoders_pixels(tmp_path, kind):
    data = _jpeg(tmp_path / "a.jpg", kind)
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg"), imagecodecs.jpeg8_decode(data))
    luma = imagecodecs.jpeg8_decode(data, outcolorspace="GRAY")
    np.testing.assert_array_equal(open_stack(tmp_path / "a.jpg").grey(0), luma)


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_jpeg_cut_in_half_is_an_error_naming_it(tmp_path, kind):
    data = _jpeg(tmp_path / "good.jpg", kind)
    for read in _reads(tmp_path, data[: len(data) // 2]).values():
        with pytest.raises(StackError, match=r"bad\.jpg: damaged JPEG \(premature end of data\)"):
            read()


@pytest.mark.parametrize("kind", JPEG_KINDS)
def test_jpeg_with_overwritten_data_is_an_error_naming_it(tmp_path, kind):
    data = _jpeg(tmp_path / "good.jpg", kind)
    whole = imagecodecs.jpeg8_decode(data)
    middle = len(data) // 2
    assert data.index(b"\xff\xda") < middle  # in the coded data
    missed = []
    for seed in range(20):
        noise = np.random.default_rng(seed).integers(0, 256, 50, np.uint8).tobytes()
        damaged = data[:middle] + noise + data[middle + 50 :]
        told = set()
        for read in _reads(tmp_path, damaged).values():
            try:
                image = read()
            except StackError as exc:
                told.add(str(exc))
            else:
                # What libjpeg does not notice decodes to other pixels all the same.
                assert image.shape != whole.shape or not np.array_equal(image, whole)
                told.add(None)
        assert len(told) == 1  # every read tells the same
        if told == {None}:
            missed.append(seed)
        else:
            assert re.match(r".*bad\.jpg: (damaged JPEG|cannot read image) \(", told.pop())
    # Measured: all 20 caught in restarts and progressive streams, 19 in the
    # baseline one (seed 18 decodes with no warning from libjpeg).
    assert len(missed) <= 1, missed


def test_damaged_jpegs_can_be_left_out(tmp_path):
    data = _jpeg(tmp_path / "a1.jpg")
    (tmp_path / "a2.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "a3.jpg").write_bytes(data)
    left_out = r"a2\.jpg: damaged JPEG \(premature end of data\); left out"
    with pytest.warns(StackWarning, match=left_out):
        stack = open_stack(tmp_path, skip_damaged=True)
    assert stack.names == ["a1.jpg", "a3.jpg"]
    np.testing.assert_array_equal(stack[1], imagecodecs.jpeg8_decode(data))
    (tmp_path / "a1.jpg").write_bytes(data[:-2])  # no end-of-image marker
    (tmp_path / "a3.jpg").write_bytes(data[: len(data) // 3])
    with pytest.warns(StackWarning), pytest.raises(StackError, match="every input slice is"):
        open_stack(tmp_path, skip_damaged=True)


def test_tiff_without_pages_is_an_error_not_left_out(tmp_path):
    # Regression (hypothesis): a TIFF whose first-page offset was damaged has
    # no pages, and its file silently contributed no slice to the stack.
    for k in range(3):
        write_image(tmp_path / f"z{k}.tif", np.full((8, 8), k, np.uint8))
    data = bytearray((tmp_path / "z1.tif").read_bytes())
    data[4:8] = bytes(4)
    (tmp_path / "z1.tif").write_bytes(bytes(data))
    with pytest.raises(StackError, match="z1.tif: TIFF holds no images"):
        open_stack(tmp_path)


@pytest.mark.parametrize("twice", ["file", "folder", "file in folder"])
def test_an_input_given_twice_is_refused(tmp_path, twice):
    for k in range(2):
        write_image(tmp_path / f"z{k}.png", np.zeros((4, 4), np.uint8))
    inputs = {
        "file": [tmp_path / "z0.png", tmp_path / "z1.png", tmp_path / "./z0.png"],
        "folder": [tmp_path, tmp_path / "."],
        "file in folder": [tmp_path, tmp_path / "z1.png"],
    }[twice]
    with pytest.raises(StackError, match="is given twice"):
        open_stack(inputs)
