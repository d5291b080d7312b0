import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from conftest import region_stack

from stacker import __version__, cli
from stacker.cli import main
from stacker.io import read_image
from stacker.outputs import write_image


@pytest.fixture
def slices(write_slices):
    stack, truth, _ = region_stack(5, shape=(40, 50), channels=3)
    return write_slices(stack), truth


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_merge_end_to_end(slices, tmp_path, capsys):
    paths, truth = slices
    out, depth, preview = tmp_path / "c.png", tmp_path / "d.png", tmp_path / "p.png"
    code, _, err = run(
        capsys, "merge", *paths, "-o", out, "--depth", depth, "--depth-preview", preview
    )
    assert code == 0, err
    assert read_image(out).shape == (40, 50, 3)
    d = read_image(depth)
    assert d.dtype == np.uint16 and d.max() == 4
    assert (d == truth).mean() > 0.85
    assert read_image(preview).shape[0] == 40


def test_merge_float_depth_tiff(slices, tmp_path, capsys):
    paths, _ = slices
    code, _, err = run(
        capsys,
        "merge",
        *paths,
        "-o",
        tmp_path / "c.tif",
        "--depth",
        tmp_path / "d.tif",
        "--depth-format",
        "float",
    )
    assert code == 0, err
    assert read_image(tmp_path / "d.tif").dtype == np.float32


def test_sixteen_bit_stays_sixteen_bit(tmp_path, write_slices, capsys):
    stack, _, _ = region_stack(3, shape=(20, 30), dtype=np.uint16)
    paths = write_slices(stack, fmt="tif")
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png")
    assert code == 0, err
    assert read_image(tmp_path / "c.png").dtype == np.uint16
    # JPEG cannot hold it: a one-line error naming the way out, and no file
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.jpg")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.endswith("use a format that can (.png, .tif) or ask for --bit-depth 8\n")
    assert not (tmp_path / "c.jpg").exists()
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.jpg", "--bit-depth", "8")
    assert code == 0 and read_image(tmp_path / "c.jpg").dtype == np.uint8


def test_non_natural_order_is_announced(slices, tmp_path, capsys):
    paths, _ = slices
    shuffled = [paths[2], paths[0], paths[1], paths[4], paths[3]]
    code, _, err = run(capsys, "merge", *shuffled, "-o", tmp_path / "c.png")
    assert code == 0 and "warning:" in err and "--order given" in err


def test_refuses_to_overwrite_an_input(slices, capsys):
    paths, _ = slices
    before = paths[0].read_bytes()
    code, _, err = run(capsys, "merge", *paths, "-o", paths[0])
    assert (
        code == 2 and err == f"error: -o {paths[0]}: is an input slice; refusing to overwrite it\n"
    )
    assert paths[0].read_bytes() == before


def _bad_inputs(tmp_path, paths):
    text = tmp_path / "zz_text.png"
    text.write_text("I am not an image")
    other = tmp_path / "zz_other.png"
    write_image(other, np.zeros((10, 10, 3), np.uint8))
    empty = tmp_path / "empty"
    empty.mkdir()
    cut = tmp_path / "zz_cut.jpg"
    write_image(cut, read_image(paths[0]))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return {
        "missing": ([tmp_path / "nope.png"], "no such file"),
        "cut_jpeg": ([*paths, cut], "zz_cut.jpg: damaged JPEG (premature end of data)"),
        "text": ([*paths, text], "zz_text.png: not a PNG, JPEG or TIFF image"),
        "size": ([*paths, other], "zz_other.png: shape (10, 10, 3) differs"),
        "empty_dir": ([empty], "no images"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "size", "empty_dir", "cut_jpeg"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(slices, tmp_path, capsys, case):
    paths, _ = slices
    inputs, message = _bad_inputs(tmp_path, paths)[case]
    out = tmp_path / "result.png"
    out.write_bytes(b"earlier")
    code, _, err = run(capsys, "merge", *inputs, "-o", out, "--depth", tmp_path / "d.png")
    assert code == 2
    assert message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert out.read_bytes() == b"earlier" and not (tmp_path / "d.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_usage_exit_2(capsys):
    code, _, err = run(capsys, "merge", "-o", "x.png")
    assert code == 2 and err == "error: Missing argument 'INPUTS'.\n"
    code, _, err = run(capsys, "merge", "a.png", "-o", "x.png", "--depth-format", "nope")
    assert code == 2
    assert (
        err == "error: Invalid value for '--depth-format': 'nope' is not one of 'index', 'float'.\n"
    )


def test_debug_shows_traceback(tmp_path, capsys):
    code, _, err = run(capsys, "merge", tmp_path / "nope.png", "-o", tmp_path / "o.png", "--debug")
    assert code == 2 and "Traceback" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"stacker {__version__}"


def test_focus_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = np.full((30, 30, 3), 120, np.uint8)
    img[:, :15] = rng.integers(0, 255, (30, 15, 3))
    write_image(tmp_path / "photo.png", img)
    code, _, err = run(
        capsys,
        "focus",
        tmp_path / "photo.png",
        "-o",
        tmp_path / "f.png",
        "--masked",
        tmp_path / "m.png",
        "--background",
        "black",
    )
    assert code == 0, err
    sk = read_image(tmp_path / "f.png")
    assert sk.dtype == np.uint8 and sk[:, :8].mean() < sk[:, 25:].mean() == 255
    masked = read_image(tmp_path / "m.png")
    assert (masked[:, 25:] == 0).all() and np.array_equal(masked[:, :8], img[:, :8])


def test_focus_rejects_bad_colour(tmp_path, capsys):
    write_image(tmp_path / "p.png", np.zeros((4, 4), np.uint8))
    code, _, err = run(
        capsys,
        "focus",
        tmp_path / "p.png",
        "-o",
        tmp_path / "f.png",
        "--background",
        "chartreuse-ish",
    )
    assert code == 2 and "colour" in err


def test_python_dash_m_runs_in_subprocess(slices, tmp_path):
    paths, _ = slices
    proc = subprocess.run(
        [sys.executable, "-m", "stacker", "merge", *map(str, paths), "-o", str(tmp_path / "c.png")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.png").exists()


@pytest.mark.parametrize("method", ["argmax", "pyramid", "depthmap"])
def test_merge_with_each_method(slices, tmp_path, capsys, method):
    paths, truth = slices
    depth = tmp_path / "d.tif"
    code, _, err = run(
        capsys,
        "merge",
        *paths,
        "-o",
        tmp_path / "c.png",
        "--method",
        method,
        "--depth",
        depth,
        "--depth-format",
        "float",
    )
    assert code == 0, err
    assert (np.rint(read_image(depth)) == truth).mean() > 0.85


def test_measure_option_reaches_the_merge(slices, tmp_path, capsys, monkeypatch):
    paths, _ = slices
    seen = []
    original = cli.merge_stack
    monkeypatch.setattr(cli, "merge_stack", lambda *a, **k: seen.append(k) or original(*a, **k))
    for extra in ([], ["--measure", "variance"], ["--measure", "mean-std"]):
        code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png", *extra)
        assert code == 0, err
    assert [k["measure"] for k in seen] == [None, "variance", "mean-std"]
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png", "--measure", "nope")
    assert code == 2 and "nope" in err


def test_transforms_are_saved_and_reused(slices, tmp_path, capsys):
    paths, _ = slices
    saved = tmp_path / "t.json"
    code, _, err = run(
        capsys, "merge", *paths, "-o", tmp_path / "a.png", "--save-transforms", saved
    )
    assert code == 0, err
    assert len(json.loads(saved.read_text())["slices"]) == len(paths)
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "b.png", "--transforms", saved)
    assert code == 0, err
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"))
    code, _, err = run(capsys, "merge", *paths[:3], "-o", tmp_path / "c.png", "--transforms", saved)
    assert code == 2 and "transforms" in err


@pytest.mark.parametrize(
    "flags",
    [
        ["--align", "none"],
        ["--no-crop"],
        ["--no-brightness"],
        ["--align", "translation", "--align-ref", "0"],
    ],
)
def test_alignment_flags(slices, tmp_path, capsys, flags):
    paths, _ = slices
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png", *flags)
    assert code == 0, err
    assert read_image(tmp_path / "c.png").shape == (40, 50, 3)


def test_bad_reference_slice(slices, tmp_path, capsys):
    paths, _ = slices
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png", "--align-ref", "7")
    assert code == 2 and err == "error: --align-ref must be a slice index in 0..4, got 7\n"


@pytest.mark.parametrize("threads", ["1", "3"])
def test_threads_option_gives_the_same_result(slices, tmp_path, capsys, threads):
    paths, _ = slices
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "a.png", "--threads", threads)
    assert code == 0, err
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "b.png", "--threads", "2")
    assert code == 0, err
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"))


def test_tile_option_gives_the_same_result(slices, tmp_path, capsys):
    paths, _ = slices
    outputs = {}
    for name, extra in (("whole", []), ("tiled", ["--tile", "32"])):
        out, depth = tmp_path / f"{name}.png", tmp_path / f"{name}_depth.tif"
        args = ["merge", *paths, "-o", out, "--depth", depth, "--depth-format", "float", *extra]
        code, _, err = run(capsys, *args)
        assert code == 0, err
        outputs[name] = read_image(out), read_image(depth)
    for whole, tiled in zip(outputs["whole"], outputs["tiled"], strict=True):
        np.testing.assert_array_equal(whole, tiled)
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png", "--tile", "8")
    assert code == 2 and "--tile" in err


def test_skip_bad_leaves_damaged_jpegs_out_with_a_warning(slices, tmp_path, capsys):
    paths, _ = slices
    cut = tmp_path / "zz_cut.jpg"
    write_image(cut, read_image(paths[0]))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "c.png"
    code, _, err = run(capsys, "merge", *paths, cut, "-o", out, "--skip-bad", "-q")
    assert code == 0, err
    assert err == f"warning: {cut}: damaged JPEG (premature end of data); left out\n"
    assert read_image(out).shape == (40, 50, 3)


@pytest.mark.parametrize("argv", [["-h"], ["--help"], []])
def test_help_and_bare_command(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "Usage: stacker" in out and "merge" in out


def test_merge_usage_shows_real_names(capsys):
    code, out, _ = run(capsys, "merge", "-h")
    assert code == 0 and "Usage: stacker merge [OPTIONS] INPUTS..." in out
    assert "{" not in out.splitlines()[1]


def test_default_output_goes_beside_the_slice_folder(slices, tmp_path, capsys):
    paths, _ = slices
    folder = tmp_path / "shots"
    folder.mkdir()
    for p in paths:
        p.rename(folder / p.name)
    code, out, err = run(capsys, "merge", folder, "-q")
    expected = tmp_path / "shots_composite.png"
    assert code == 0, err
    assert out == f"wrote {expected} (composite)\n"
    assert read_image(expected).shape == (40, 50, 3)
    # Files of one folder: the same; a single file: <stem>_composite beside it.
    assert cli.default_output([folder / "z0.png"] * 2, [folder / "z0.png"]) == expected
    assert (
        cli.default_output([folder / "z0.png"], [folder / "z0.png"]) == folder / "z0_composite.png"
    )


def test_outputs_in_the_slice_folder_are_not_stacked_next_time(slices, tmp_path, capsys):
    paths, _ = slices
    args = ["merge", tmp_path, "-o", tmp_path / "c.png", "--depth", tmp_path / "d.png", "-q"]
    assert run(capsys, *args)[0] == 0
    (tmp_path / f"{tmp_path.name}_composite.png").write_bytes((tmp_path / "c.png").read_bytes())
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert err == (
        "warning: named like an output; left out: c.png, d.png, "
        f"{tmp_path.name}_composite.png (3 files)\n"
    )


@pytest.mark.parametrize("twice", ["file", "folder"])
def test_an_input_given_twice_is_refused(slices, tmp_path, capsys, twice):
    paths, _ = slices
    inputs = [*paths, paths[1]] if twice == "file" else [tmp_path, tmp_path / "."]
    code, _, err = run(capsys, "merge", *inputs, "-o", tmp_path / "out" / "c.png")
    expected = paths[1] if twice == "file" else tmp_path / "."
    assert code == 2 and err == f"error: {expected} is given twice\n"


@pytest.mark.parametrize("axes, shape", [("ZCYX", (3, 2, 8, 8)), ("TZYX", (2, 3, 8, 8))])
def test_hyperstacks_are_refused_naming_their_axes(tmp_path, capsys, axes, shape):
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint16), imagej=True, metadata={"axes": axes})
    code, _, err = run(capsys, "merge", path, "-o", tmp_path / "c.tif")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {path}: a TIFF with axes {axes} (channels or time points")


def test_unwritable_output_fails_before_any_decoding(slices, tmp_path, capsys, monkeypatch):
    paths, _ = slices
    monkeypatch.setattr(cli, "open_stack", lambda *a, **k: pytest.fail("decoded"))
    code, _, err = run(capsys, "merge", *paths, "--depth", tmp_path / "no" / "d.png")
    assert code == 2
    missing = tmp_path / "no"
    assert err == (
        f"error: --depth {missing / 'd.png'}: the output folder {missing} does not exist\n"
    )
    code, _, err = run(capsys, "merge", *paths, "--output", tmp_path)
    assert code == 2 and err == f"error: --output {tmp_path}: is a folder; give a file name\n"


def test_alpha_warning_is_printed_once_with_a_count(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for k in range(4):
        write_image(tmp_path / f"z{k}.png", rng.integers(0, 255, (20, 20, 4), dtype=np.uint8))
    code, _, err = run(capsys, "merge", tmp_path, "-o", tmp_path / "out.png", "--align", "none")
    assert code == 0, err
    assert err == "warning: alpha channel dropped: z0.png, z1.png, z2.png, ... (4 files)\n"


def test_unexpected_failure_is_one_line_in_plain_words(slices, tmp_path, capsys, monkeypatch):
    paths, _ = slices

    def fail(*args, **kwargs):
        logging.getLogger("tifffile").warning("a tifffile log line")
        raise RuntimeError("something odd happened")

    monkeypatch.setattr(cli, "merge_stack", fail)
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png")
    assert code == 1 and err == "error: something odd happened (--debug shows where)\n"


def test_a_failed_write_names_the_output_not_the_temporary_file(
    slices, tmp_path, capsys, monkeypatch
):
    paths, _ = slices
    (tmp_path / "c.png").write_bytes(b"earlier")

    def disk_full(tmp, *args):
        raise OSError(28, "No space left on device", str(tmp))

    monkeypatch.setattr("stacker.outputs._encode", disk_full)
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png")
    assert code == 2
    assert err == f"error: -o {tmp_path / 'c.png'}: cannot be written (No space left on device)\n"
    assert (tmp_path / "c.png").read_bytes() == b"earlier"
    assert not [p for p in tmp_path.iterdir() if "stacker-tmp" in p.name]


def test_progress_names_each_stage_on_a_line_of_its_own(slices, tmp_path, capsys, monkeypatch):
    paths, _ = slices
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png")
    assert code == 0, err
    lines = [line.split("\r")[-1] for line in err.split("\n")[:-1]]
    assert [line.split(":")[0].strip() for line in lines] == [
        "registering",
        "measuring",
        "compositing",
        "writing",
    ]
    assert lines[0].startswith("registering: 5/15 slices,") and lines[0].endswith("s left")
    assert lines[-1].startswith("    writing: 1/1 outputs,")
    assert out == f"wrote {tmp_path / 'c.png'} (composite)\n"


def test_an_error_after_progress_starts_a_line_of_its_own(slices, tmp_path, capsys, monkeypatch):
    paths, _ = slices
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    def fail(*args):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr("stacker.outputs._encode", fail)
    code, _, err = run(capsys, "merge", *paths, "-o", tmp_path / "c.png")
    assert code == 1 and "\r    writing: 0/1 outputs" in err
    assert err.endswith(" s left\nerror: encoder failed (--debug shows where)\n")
