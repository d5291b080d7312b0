"""Registration of a whole stack: two walks outward from the reference, pairs chained."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._parallel import ordered_map
from ..exposure import block_mean
from ..focus import to_gray
from ._geometry import _scaled
from ._register import _check_model, _Pyramid, _register

# Registration quality (correlation of band-passed slices) below which a slice counts as not
# registered: the walk steps over it, and the pipeline reports it.
MIN_MATCH = 0.2
_TRUST_GUESS = 0.9  # a pair started from its neighbour's motion must match this share as well


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def estimate_stack_transforms(
    stack: Sequence[np.ndarray],
    *,
    model: str = "similarity",
    reference: int | None = None,
    max_size: int = 1024,
    threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[np.ndarray], list[float]]:
    """Estimate the transform from a reference slice to every slice of a focal stack.

    Each slice is registered to its neighbour towards the reference (neighbours are focused
    alike, so they match best) and the pair transforms are chained. A slice that fails against
    its neighbour is searched for against the reference, and if that fails too it keeps its
    neighbour's transform and is skipped as a link. Slices are walked outward from the
    reference, below and above it at the same time when there are threads for both, each
    decoded once. Downscaled slices held at a time: the reference, and per walk its anchor,
    the slice in hand and those read ahead.

    Parameters
    ----------
    stack : sequence of (M, N) or (M, N, 3) ndarray
        Slices in focus order, any dtype, e.g. a :class:`stacker.io.Stack`.
    model : {'none', 'translation', 'similarity', 'affine'}, optional
        Motion model (see :func:`estimate_transform`).
    reference : int, optional
        Index of the reference slice; default ``len(stack) // 2``.
    max_size : int, optional
        Slices are block-averaged to a long side of at most this, for speed; the matrices
        are returned at full resolution.
    threads : int, optional
        Threads for the two walks and for decoding and downscaling the next slices
        meanwhile. The transforms do not depend on it.
    progress : callable, optional
        Called as ``progress(done, total)`` once the reference is read and after each
        slice, possibly from a worker thread.

    Returns
    -------
    matrices : list of (3, 3) ndarray
        Per slice, maps reference (row, col, 1) to the slice's (row, col, 1).
    qualities : list of float
        Per slice, the quality of its registration (see :func:`estimate_transform`); 1 for
        the reference, below :data:`MIN_MATCH` (0.2) for a slice that matched nothing.
    """
    _check_model(model)
    max_size = _check_int(max_size, "max_size", 64)
    n = len(stack)
    if n == 0:
        raise ValueError("stack must hold at least one slice")
    ref_index = n // 2 if reference is None else _check_int(reference, "reference", 0)
    if ref_index >= n:
        raise ValueError(f"reference must be a slice index below {n}, got {reference}")
    first = np.asarray(stack[ref_index])
    shape, k = first.shape, int(np.ceil(max(first.shape[:2]) / max_size))

    def load(image: np.ndarray, index: int) -> _Pyramid:
        if image.shape[:2] != shape[:2]:
            raise ValueError(f"stack slice {index} has shape {image.shape}, reference {shape}")
        return _Pyramid(block_mean(to_gray(image), k))

    ref_pyr = load(first, ref_index)
    del first
    matrices, qualities = [np.eye(3)] * n, [1.0] * n
    done, lock, stop = 1, threading.Lock(), threading.Event()
    if progress is not None:
        progress(done, n)

    def walk(chain: range, loaders: int) -> None:
        try:
            register_chain(chain, loaders)
        except BaseException:
            stop.set()  # the other walk stops too, an error or interrupt is not kept waiting
            raise

    def register_chain(chain: range, loaders: int) -> None:
        """Register the slices of `chain`, outward from the reference, each to its anchor."""
        nonlocal done
        # Worker threads decode and prepare the next slices while this one registers.
        pyramids = ordered_map(lambda i: load(np.asarray(stack[i]), i), chain, loaders)
        # The anchor is the nearest slice towards the reference with a trusted
        # transform, so a slice that matches nothing (blank, or blurred beyond
        # recognition) is stepped over.
        anchor, anchor_matrix, guess, guess_quality = ref_pyr, np.eye(3), None, 0.0
        for index, pyr in zip(chain, pyramids, strict=True):
            if stop.is_set():
                return
            pair, quality = _register(anchor, pyr, model, initial=guess)
            if guess is not None and quality < _TRUST_GUESS * guess_quality:
                # Neighbouring pairs move alike (breathing, drift), so the last pair's
                # motion starts the next one's refinement; a bump that breaks the pattern
                # shows as a worse match, and the global search runs after all.
                searched, q_searched = _register(anchor, pyr, model)
                if q_searched > quality:
                    pair, quality = searched, q_searched
            matrix = pair @ anchor_matrix
            if quality < MIN_MATCH and anchor is not ref_pyr and model != "none":
                direct, q_direct = _register(ref_pyr, pyr, model)
                if q_direct > quality:
                    matrix, quality = direct, q_direct
            if quality >= MIN_MATCH:
                anchor, anchor_matrix = pyr, matrix
                guess, guess_quality = (None, 0.0) if model == "none" else (pair, quality)
            else:
                matrix = anchor_matrix  # no evidence of motion beats a random guess
            matrices[index], qualities[index] = matrix, quality
            with lock:
                done += 1
                if progress is not None:
                    progress(done, n)

    # The slices below and above the reference form two independent chains: with
    # threads to spare, they register at the same time.
    down, up = range(ref_index - 1, -1, -1), range(ref_index + 1, n)
    if threads > 1 and len(down) and len(up):
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(walk, down, threads // 2)
            walk(up, threads - threads // 2)
            other.result()
    else:
        walk(down, threads)
        walk(up, threads)
    return [_scaled(m, 1 / k, (1 - k) / (2 * k)) for m in matrices], qualities
