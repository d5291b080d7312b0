"""End-to-end golden test: the default merge of a small rendered stack against stored outputs.

Like focus-stack's ``examples/pcb/expected.jpg``, the expected composite and
depth map are files, compared with a tolerance that survives rounding and
platform differences but not a change in what the method does. After a
deliberate change of the method (or of :mod:`stacker.synthetic`'s rendering),
look at the new outputs and store them with ``PYTHONPATH=. python tests/test_golden.py``
from the repository root.
"""

from pathlib import Path

import numpy as np
from conftest import psnr

import stacker
from stacker._dtype import convert_dtype
from stacker.io import read_image
from stacker.outputs import write_image
from stacker.synthetic import height_field, render_stack, texture

DATA = Path(__file__).parent / "data"
COMPOSITE = DATA / "golden_composite.png"
DEPTH = DATA / "golden_depth.tif"


def _merge() -> stacker.MergeResult:
    """Defaults on 8 grey slices of a 64 px textured terraces scene."""
    shape, n = (64, 64), 8
    sharp = texture(shape, seed=5)
    height = (0.3 + height_field("terraces", shape, seed=5) * (n - 1.6)).astype(np.float32)
    return stacker.merge(render_stack(sharp, height, n, seed=5), threads=1)


def test_default_merge_matches_the_stored_outputs():
    result = _merge()
    expected = read_image(COMPOSITE)
    assert result.composite.shape == expected.shape
    as_float = convert_dtype(result.composite, "float32")
    with np.errstate(divide="ignore"):  # equal images: infinite PSNR
        assert psnr(as_float, convert_dtype(expected, "float32")) > 45
    close = np.abs(result.depth - read_image(DEPTH)) <= 0.05
    assert close.mean() >= 0.99, close.mean()


if __name__ == "__main__":
    golden = _merge()
    write_image(COMPOSITE, golden.composite)
    write_image(DEPTH, golden.depth)
