"""Interrupting a real ``stacker merge`` while it writes: earlier outputs survive, no temps stay."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import region_stack

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
# The command line, with every output's encoding followed by a long pause, so
# that the test can signal the process while it is writing.
SLOW_WRITER = """
import sys, time
import stacker.outputs as outputs
encode = outputs._encode
def slow(*args):
    encode(*args)
    time.sleep(60)
outputs._encode = slow
from stacker.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def job(tmp_path, write_slices):
    stack, _, _ = region_stack(3, shape=(40, 50))
    paths = write_slices(stack)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("c.png", "d.png"):
        (out / name).write_bytes(b"earlier " + name.encode())
    args = ["merge", *map(str, paths), "-o", str(out / "c.png"), "--depth", str(out / "d.png")]
    return out, args


def _start(args, code=SLOW_WRITER):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_for_temp(proc, folder: Path) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [p for p in folder.iterdir() if p.name.startswith(".c.png.stacker-tmp-")]
        if temps and temps[0].stat().st_size > 0:
            return temps[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no output was being written")


def _earlier_outputs_only(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["c.png", "d.png"] and all(
        (folder / n).read_bytes() == b"earlier " + n.encode() for n in ("c.png", "d.png")
    )


@pytest.mark.parametrize(
    "signum, code, message",
    [
        (signal.SIGINT, 130, "error: interrupted\n"),
        (signal.SIGTERM, 143, "error: terminated\n"),
    ],
)
def test_a_signal_while_writing_leaves_earlier_outputs(job, signum, code, message):
    out, args = job
    proc = _start(args)
    _wait_for_temp(proc, out)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code and stderr == message and stdout == ""
    assert _earlier_outputs_only(out)


def test_a_rerun_removes_what_a_killed_run_left(job):
    out, args = job
    proc = _start(args)
    temp = _wait_for_temp(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert temp.exists() and (out / "c.png").read_bytes() == b"earlier c.png"
    rerun = _start([*args, "-q"], code="from stacker.cli import run; run()")
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["c.png", "d.png"]
    assert (out / "c.png").read_bytes().startswith(b"\x89PNG")
