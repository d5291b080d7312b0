import numpy as np
import pytest

from stacker.focus import focus_radius
from stacker.io import open_stack
from stacker.methods import STATES
from stacker.plan import plan_merge


def _plan(method, shape, tile_size, **kwargs):
    options = dict(
        sigma=2.0,
        measure="mean-std",
        align="none",
        align_reference=None,
        transforms=None,
        crop=True,
        on_align_fail="keep",
        tile_size=tile_size,
        threads=1,
        progress=None,
    )
    texture = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    stack = open_stack(np.stack([texture] * 3))
    return plan_merge(stack, STATES[method], **(options | kwargs))


def _starts(plan):
    return {s.start for tile in plan.tiles for s in tile.core}


def test_pyramid_tiles_start_on_the_coarsest_level_grid():
    # A 1100 px frame has 7 levels whole; tiled, the pyramid stops at 6.
    whole = _plan("pyramid", (1100, 1100), None)
    tiled = _plan("pyramid", (1100, 1100), 200)
    assert whole.levels == 7 and len(whole.tiles) == 1 and whole.margin == 0
    assert tiled.levels == 6 and len(tiled.tiles) > 1
    assert all(start % 64 == 0 for start in _starts(tiled))
    reach = focus_radius(2.0, "mean-std") + STATES["pyramid"].reach(6, 2.0)
    assert tiled.margin % 64 == 0 and reach <= tiled.margin < reach + 64


@pytest.mark.parametrize("method", ["depthmap", "argmax"])
def test_other_tiles_start_on_the_gain_block_grid(method):
    plan = _plan(method, (1100, 1100), 198)
    # Block means about 256 px across: blocks of 5 px on an 1100 px frame, so
    # 198 px tiles shrink to 195.
    assert plan.levels == 0 and plan.block == 5
    assert all(start % 5 == 0 for start in _starts(plan)) and 195 in _starts(plan)
    reach = focus_radius(2.0, "mean-std") + STATES[method].reach(0, 2.0)
    assert plan.margin == reach


def test_plan_counts_the_work_of_every_pass():
    plan = _plan("depthmap", (64, 64), 16, align="similarity")
    # Still slices: every one kept, with an identity transform.
    assert plan.aligned and plan.keep == [0, 1, 2] and plan.registered == 3
    # registration + survey + 16 tiles x 3 slices, twice (depth, then composite)
    assert len(plan.tiles) == 16 and plan.work == 3 + 3 + 16 * 3 * 2
