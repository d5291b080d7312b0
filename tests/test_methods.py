"""Each method's running state, through the MethodState contract the passes rely on."""

import numpy as np
import pytest

from stacker.focus import focus_measure
from stacker.methods import METHODS, STATES, Frames, MethodState
from stacker.synthetic import height_field, render_stack, texture


@pytest.fixture(scope="module")
def terraces():
    """8 RGB slices of a rendered terraces scene and its true depth."""
    shape, n = (48, 64), 8
    height = (0.3 + height_field("terraces", shape, seed=3) * (n - 1.6)).astype(np.float32)
    stack = render_stack(texture(shape, channels=3, seed=3), height, n, seed=3)
    return stack, height


def _stream(method: str, stack: np.ndarray) -> Frames:
    """Fold every slice into a fresh state of `method` and finish its frames."""
    state = STATES[method](stack.shape[1:], stack.dtype)
    for image in stack:
        focus = focus_measure(image, measure=state.measure)
        state.update(state.prepare(image, focus))
    frames = state.result(noise=1e-5, value_range=None)
    STATES[method].finish(frames, sigma=2.0, slices=len(stack))
    return frames


def test_every_method_is_a_method_state():
    assert set(STATES) == set(METHODS)
    assert all(issubclass(cls, MethodState) for cls in STATES.values())


@pytest.mark.parametrize("method", METHODS)
def test_result_frames_have_the_frame_shape_and_types(terraces, method):
    stack, height = terraces
    frames = _stream(method, stack)
    for frame in (frames.depth, frames.sharpness, frames.confidence):
        assert frame.shape == height.shape and frame.dtype == np.float32
    assert 0 <= frames.confidence.min() and frames.confidence.max() <= 1
    assert 0 <= frames.depth.min() and frames.depth.max() <= len(stack) - 1
    # A two-pass method's composite comes from the second pass; finish() uses and
    # lets go of the wider window's frames.
    two_pass = STATES[method].two_pass
    assert (frames.composite is None) == two_pass
    if not two_pass:
        assert frames.composite.shape == stack.shape[1:]
        assert frames.composite.dtype == stack.dtype
    assert frames.coarse is None and frames.strength is None


@pytest.mark.parametrize("method, within", [("depthmap", 0.99), ("argmax", 0.94)])
def test_depth_of_a_rendered_scene(terraces, method, within):
    stack, height = terraces
    error = np.abs(_stream(method, stack).depth - height)[6:-6, 6:-6]
    # Measured: 99.7 % of depthmap's interior pixels within one slice, 96.2 % of argmax's.
    assert np.mean(error <= 1) >= within


@pytest.mark.parametrize("method", METHODS)
def test_plan_knowledge_is_consistent(method):
    cls = STATES[method]
    levels = cls.levels((512, 512), tiled=True)
    assert levels >= 0 and cls.levels((512, 512), tiled=False) >= levels
    # Tiles start on the method's grid; its reach is what a tile's overlap must hold.
    assert cls.grid(levels) >= 1 and cls.reach(levels, 2.0) >= 0
    small = cls.bytes_per_pixel((100, 100), np.dtype(np.uint8), threads=1)
    large = cls.bytes_per_pixel((100, 100, 3), np.dtype(np.uint16), threads=4)
    assert 0 < small < large


def test_only_the_pyramid_needs_a_coarse_grid():
    levels = 6
    assert STATES["pyramid"].grid(levels) == 2**levels
    assert STATES["depthmap"].grid(levels) == STATES["argmax"].grid(levels) == 1
