import numpy as np
import pytest

from stacker.tiles import available_memory, choose_tile_side, tile_grid


@pytest.mark.parametrize("shape", [(10, 4), (64, 64), (97, 250)])
@pytest.mark.parametrize("side, margin, step", [(6, 2, 1), (16, 5, 4), (30, 0, 8), (None, 0, 1)])
def test_cores_partition_the_frame_and_pads_hold_the_margin(shape, side, margin, step):
    count = np.zeros(shape, int)
    for tile in tile_grid(shape, side, margin, step):
        count[tile.core] += 1
        assert all(c.start % step == 0 for c in tile.core)
        for c, p, n in zip(tile.core, tile.padded, shape, strict=True):
            assert p.start == max(0, c.start - margin) and p.stop == min(n, c.stop + margin)
        # inner locates the core inside the padded tile
        rows, cols = tile.padded
        frame = np.arange(shape[0] * shape[1]).reshape(shape)
        np.testing.assert_array_equal(frame[rows, cols][tile.inner], frame[tile.core])
        assert tile.shape == frame[rows, cols].shape
    assert (count == 1).all()


def test_side_is_rounded_down_to_the_step():
    tiles = tile_grid((100, 100), 50, 0, step=16)
    assert tiles[0].core == (slice(0, 48), slice(0, 48)) and len(tiles) == 9


@pytest.mark.parametrize("kwargs", [dict(side=0), dict(margin=-1), dict(step=0)])
def test_bad_grid_arguments(kwargs):
    args = dict(side=8, margin=1, step=1) | kwargs
    with pytest.raises(ValueError):
        tile_grid((32, 32), **args)


def test_tile_side_from_budget():
    assert choose_tile_side((4000, 6000), 80, 6, None) is None
    assert choose_tile_side((4000, 6000), 80, 6, 80 * 4000 * 6000) is None
    side = choose_tile_side((4000, 6000), 80, 6, 80 * 1000 * 1000)
    assert side == 1000 - 12  # the padded tile fits the budget
    assert choose_tile_side((40000, 60000), 80, 6, 1000) == 256  # never absurdly small


def test_available_memory_is_plausible():
    available = available_memory()
    assert available is None or available > 2**20
