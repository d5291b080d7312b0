"""The stacking pipeline: stream slices through focus, selection and compositing."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .composite import HardPick
from .focus import focus_measure
from .io import StackWarning, open_stack
from .select import ArgmaxSelector

__all__ = ["MergeResult", "merge"]

StackInput = str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray]


@dataclass
class MergeResult:
    """What :func:`merge` returns.

    Attributes
    ----------
    composite : (M, N) or (M, N, 3) ndarray
        All-in-focus image, in the input's dtype and channels.
    depth : (M, N) ndarray of float32
        Depth in slice units: the index of the sharpest slice per pixel.
    sharpness : (M, N) ndarray of float32
        Focus value of the chosen slice (0 where the stack has no texture).
    n_slices : int
        Number of slices stacked.
    names : list of str
        Slice labels in stacking order (file names, or ``slice i``).
    """

    composite: np.ndarray
    depth: np.ndarray
    sharpness: np.ndarray
    n_slices: int
    names: list[str] = field(default_factory=list)


def merge(
    inputs: StackInput,
    *,
    sigma: float = 2.0,
    measure: str = "variance",
    order: str = "natural",
    progress: Callable[[int, int], None] | None = None,
) -> MergeResult:
    """Stack a focal series into an all-in-focus composite and a depth map.

    Slices are decoded one at a time; only the running selection and the
    composite are kept, so memory does not grow with the number of slices.

    Parameters
    ----------
    inputs : path, sequence of paths, (Z, M, N[, 3]) ndarray or sequence of arrays
        The stack: image files, a folder, a multi-page TIFF, or arrays.
    sigma : float, optional
        Focus window (Gaussian standard deviation) in pixels.
    measure : str, optional
        Focus measure name (see :data:`stacker.focus.FOCUS_MEASURES`).
    order : {'natural', 'given'}, optional
        File order (see :func:`stacker.io.open_stack`).
    progress : callable, optional
        Called as ``progress(done, total)`` after each slice.

    Returns
    -------
    result : MergeResult
        Composite, depth map and per-pixel sharpness.

    Raises
    ------
    StackError
        If the inputs cannot be read or do not form a consistent stack.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    >>> blurred = np.full_like(sharp, 128)
    >>> r = merge([blurred, sharp])
    >>> r.composite.dtype, float(r.depth.mean())
    (dtype('uint8'), 1.0)
    """
    stack = open_stack(inputs, order=order)
    if len(stack) == 1:
        warnings.warn(
            f"only one slice ({stack.names[0]}); the composite is that slice",
            StackWarning,
            stacklevel=2,
        )
    selector = ArgmaxSelector(stack.shape[:2])
    composite = HardPick(stack.shape, stack.dtype)
    for k, image in enumerate(stack):
        won = selector.update(focus_measure(image, sigma=sigma, measure=measure))
        composite.update(image, won)
        if progress is not None:
            progress(k + 1, len(stack))
    return MergeResult(
        composite=composite.image,
        depth=selector.index.astype(np.float32),
        sharpness=selector.value,
        n_slices=len(stack),
        names=stack.names,
    )
