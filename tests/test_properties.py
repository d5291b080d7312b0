"""Property tests over the API: any stack merges correctly or fails in stacker's words.

A merge of random slices must give a composite of the input's shape and dtype
with values inside the slices' range (brightness correction off), and a finite
depth within [0, n - 1]; an unusable input must raise :class:`stacker.StackError`
or ``ValueError``, never anything else.
"""

import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import stacker
from stacker.outputs import write_image

METHODS = ("depthmap", "pyramid", "argmax")
DTYPES = (np.uint8, np.uint16, np.float32)


@st.composite
def stacks(draw, allow_nonfinite=False):
    """A (Z, M, N[, 3]) stack: 1-6 slices of 1x1 up to 24x24 pixels, in one of DTYPES.

    Frames of 16 pixels and more are registered when asked.
    """
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.integers(1, 6))
    shape = (n, draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    shape += draw(st.sampled_from([(), (3,)]))
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, width=32)
        if allow_nonfinite:
            elements = st.one_of(elements, st.sampled_from([np.nan, np.inf, -np.inf]))
    else:
        elements = st.integers(0, np.iinfo(dtype).max)
    kind = draw(st.sampled_from(["random", "constant slices", "same slice"]))
    if kind == "random":
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if kind == "constant slices":
        values = draw(hnp.arrays(dtype, (n,), elements=elements))
        return np.broadcast_to(values.reshape((n,) + (1,) * (len(shape) - 1)), shape).copy()
    plane = draw(hnp.arrays(dtype, shape[1:], elements=elements))
    return np.broadcast_to(plane, shape).copy()


def _merge(inputs, method, align="none"):
    with warnings.catch_warnings():
        # One slice, failed registration and the like are warned about: not failures here.
        warnings.simplefilter("ignore", stacker.StackWarning)
        return stacker.merge(inputs, method=method, align=align, brightness=False, threads=1)


def _check_result(result, stack, *, exact_range=True):
    note(f"composite {result.composite!r}\ndepth {result.depth!r}")
    assert result.composite.dtype == stack.dtype
    # Registration may crop to what every slice covers.
    rows, cols = (s.stop - s.start for s in result.crop)
    assert rows <= stack.shape[1] and cols <= stack.shape[2]
    assert result.composite.shape == (rows, cols, *stack.shape[3:])
    composite = result.composite.astype(np.float64)
    assert np.isfinite(composite).all()
    if exact_range:
        assert stack.min() <= composite.min() and composite.max() <= stack.max()
    assert np.isfinite(result.depth).all()
    assert (result.depth >= 0).all() and (result.depth <= len(stack) - 1).all()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), method=st.sampled_from(METHODS))
def test_any_finite_stack_merges_within_its_range(stack, method):
    _check_result(_merge(stack, method), stack)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), method=st.sampled_from(METHODS))
def test_registered_stacks_merge_too(stack, method):
    # Registration resamples with Lanczos kernels, whose ringing may step a
    # little outside the slices' range (9 from slices of 0 and 8): the range
    # is not promised here, only shapes, types and depth.
    try:
        result = _merge(stack, method, align="similarity")
    except (stacker.StackError, ValueError) as exc:
        # e.g. noise "registered" so far apart that the slices share no pixel
        note(f"refused: {exc}")
        return
    _check_result(result, stack, exact_range=False)


@given(stack=stacks(), method=st.sampled_from(METHODS))
def test_identical_slices_give_that_slice(stack, method):
    assume((stack == stack[:1]).all())
    composite = _merge(stack, method).composite.astype(np.float64)
    # The pyramid rebuilds the slice in float32: one step of the integer scale at most.
    tolerance = 1.0 if stack.dtype.kind == "u" else 1e-6 * max(1.0, np.abs(stack).max())
    np.testing.assert_allclose(composite, stack[0], atol=tolerance, rtol=0)


@given(stack=stacks(allow_nonfinite=True), method=st.sampled_from(METHODS))
def test_nan_or_inf_is_refused_in_stackers_words(stack, method):
    try:
        result = _merge(stack, method)
    except stacker.StackError as exc:
        assert not np.isfinite(stack).all() and "NaN or infinite" in str(exc)
        return
    _check_result(result, stack)


def _damage(data: bytes, draw) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "zero run"]))
    buf = bytearray(data)
    if how == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    start = draw(st.integers(0, len(buf) - 1))
    if how == "zero run":
        stop = min(len(buf), start + draw(st.integers(1, 64)))
        buf[start:stop] = bytes(stop - start)
        return bytes(buf)
    for _ in range(draw(st.integers(1, 8))):
        buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    return bytes(buf)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["png", "jpg", "tif"]),
    channels=st.sampled_from([(), (3,)]),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(METHODS),
    data=st.data(),
)
def test_damaged_files_merge_or_fail_in_stackers_words(fmt, channels, seed, method, data):
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 256, (3, 24, 20, *channels), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"z{k}.{fmt}" for k in range(len(stack))]
        for path, plane in zip(paths, stack, strict=True):
            write_image(path, plane)
        victim = paths[data.draw(st.integers(0, len(paths) - 1))]
        victim.write_bytes(_damage(victim.read_bytes(), data.draw))
        try:
            result = _merge(paths, method, align=data.draw(st.sampled_from(["none", "similarity"])))
        except (stacker.StackError, ValueError) as exc:
            note(f"refused: {exc}")
            return
        decoded = np.stack([stacker.read_image(p) for p in paths])
        _check_result(result, decoded, exact_range=False)
