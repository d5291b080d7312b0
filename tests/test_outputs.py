import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stacker
from stacker.io import read_image
from stacker.outputs import OutputError, check_outputs, remove_stale_temps, write_image


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"earlier result")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("imagecodecs.png_encode", boom)
    with pytest.raises(RuntimeError):
        write_image(target, np.zeros((4, 4), np.uint8))
    assert target.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_written_file_is_not_private(tmp_path):
    write_image(tmp_path / "o.png", np.zeros((2, 2), np.uint8))
    assert (tmp_path / "o.png").stat().st_mode & 0o044


@pytest.mark.parametrize(
    "name,dtype,match",
    [
        ("o.bmpx", None, "cannot tell the format from the extension"),
        (
            "o.jpg",
            "uint16",
            "JPEG cannot hold uint16 pixels without loss; use a format that "
            "can \\(.png, .tif\\) or ask for bit_depth=8",
        ),
        (
            "o.png",
            "float32",
            "PNG cannot hold float32 pixels without loss; use a format that can \\(.tif\\)$",
        ),
        ("nodir/o.png", None, "the output folder .*nodir does not exist"),
        ("afile.png/o.png", None, "the output folder .*afile.png is not a folder"),
        ("adir", None, "is a folder; give a file name"),
    ],
)
def test_check_outputs_names_the_problem(tmp_path, name, dtype, match):
    (tmp_path / "afile.png").write_bytes(b"x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match=match) as info:
        check_outputs({"composite": tmp_path / name}, dtypes={"composite": dtype})
    assert info.value.role == "composite" and info.value.path == tmp_path / name


def test_check_outputs_probes_the_folder(tmp_path, monkeypatch):
    # Permission bits can say yes where creating a file fails (read-only mount, root).
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(stacker.outputs.os, "open", refuse)
    with pytest.raises(OutputError, match="depth map .*d.png: the output folder .* not writable"):
        check_outputs({"depth map": tmp_path / "d.png"})


def test_check_outputs_refuses_an_input_and_a_path_given_twice(tmp_path):
    src = tmp_path / "z1.png"
    write_image(src, np.zeros((2, 2), np.uint8))
    with pytest.raises(OutputError, match="is an input slice; refusing to overwrite it"):
        check_outputs({"depth map": tmp_path / "." / "z1.png"}, inputs=[src])
    with pytest.raises(OutputError, match="depth preview .*d.png: is also given as the depth map"):
        check_outputs({"depth map": tmp_path / "d.png", "depth preview": tmp_path / "./d.png"})


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_check_outputs_refuses_an_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        (locked / "x").touch()
        pytest.skip("this user writes into read-only folders (root)")
    except PermissionError:
        pass
    with pytest.raises(OutputError, match="the output folder .*locked is not writable"):
        check_outputs({"depth map": locked / "d.png"})


@pytest.fixture
def result():
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 60000, (3, 12, 10), dtype=np.uint16)
    return stacker.merge(stack, align="none", method="argmax")


def test_save_writes_every_output(result, tmp_path):
    paths = stacker.save(
        result,
        tmp_path / "c.png",
        depth=tmp_path / "d.tif",
        depth_format="float",
        depth_preview=tmp_path / "p.png",
        transforms=tmp_path / "t.json",
    )
    assert [p.name for p in paths] == ["c.png", "d.tif", "p.png", "t.json"]
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), result.composite)
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif"), result.depth)
    assert stacker.align.load_transforms(tmp_path / "t.json")[0].shape == (3, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.tif", "p.png", "t.json"]


def test_save_converts_the_composite_on_request(result, tmp_path):
    stacker.save(result, tmp_path / "c.jpg", bit_depth="8")
    assert read_image(tmp_path / "c.jpg").dtype == np.uint8
    with pytest.raises(OutputError, match="JPEG cannot hold uint16"):
        stacker.save(result, tmp_path / "c2.jpg")


def test_save_is_all_or_nothing(result, tmp_path, monkeypatch):
    for name in ("c.png", "d.png", "p.png"):
        (tmp_path / name).write_bytes(b"earlier " + name.encode())
    encode = stacker.outputs._encode

    def fail_on_preview(tmp, image, fmt, quality):
        if ".p.png." in tmp.name:
            raise KeyboardInterrupt
        encode(tmp, image, fmt, quality)

    monkeypatch.setattr(stacker.outputs, "_encode", fail_on_preview)
    with pytest.raises(KeyboardInterrupt):
        stacker.save(
            result, tmp_path / "c.png", depth=tmp_path / "d.png", depth_preview=tmp_path / "p.png"
        )
    for name in ("c.png", "d.png", "p.png"):
        assert (tmp_path / name).read_bytes() == b"earlier " + name.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png", "p.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="processes are not probed on Windows")
def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".c.png.stacker-tmp-{pid}-0a1b2c3d.png"
    live = tmp_path / f".c.png.stacker-tmp-{os.getpid()}-0a1b2c3d.png"
    other = tmp_path / ".c.png.backup"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_during_the_renames_waits_until_all_are_done(result, tmp_path, monkeypatch):
    replace = os.replace
    renamed = []

    def replace_and_signal(src, dst):
        # Ctrl-C right after the first rename: the second must still happen.
        replace(src, dst)
        renamed.append(Path(dst).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(stacker.outputs.os, "replace", replace_and_signal)
    with pytest.raises(KeyboardInterrupt):
        stacker.save(result, tmp_path / "c.png", depth=tmp_path / "d.png")
    assert renamed == ["c.png", "d.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png"]
