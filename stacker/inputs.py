"""Which files make a stack: listing, ordering and refusing inputs, before any decoding.

Also the errors and warnings of unusable or changed input, shared by every
module that reads slices.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "ORDERS",
    "StackError",
    "StackWarning",
    "check_order",
    "input_files",
    "natural_key",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
ORDERS = ("natural", "given")


class StackError(ValueError):
    """The input stack cannot be used: missing, unreadable or inconsistent slices."""


class StackWarning(UserWarning):
    """Something about the input was changed or assumed; the run goes on."""


def natural_key(path: str | os.PathLike) -> list:
    """Sort key that orders embedded numbers by value (``s2`` before ``s10``).

    Parameters
    ----------
    path : str or path-like
        File name or path.

    Returns
    -------
    key : list
        Alternating text and integer parts, comparable between paths.

    Examples
    --------
    >>> sorted(["s10.png", "s2.png", "s1.png"], key=natural_key)
    ['s1.png', 's2.png', 's10.png']
    """
    parts = re.split(r"(\d+)", str(path))
    return [int(p) if p.isdigit() else p.lower() for p in parts]


def _expand(path: Path, exclude: set[Path]) -> list[Path]:
    if not path.is_dir():
        if not path.exists():
            raise StackError(f"{path}: no such file or folder")
        return [path]
    files = []
    for p in path.iterdir():
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        # An earlier run's outputs saved among the slices must not become a slice.
        if p.resolve() in exclude or p.stem == f"{path.name}_composite":
            warnings.warn(f"{p.name}: named like an output; left out", StackWarning, stacklevel=4)
            continue
        files.append(p)
    if not files:
        raise StackError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=natural_key)


def input_files(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    order: str = "natural",
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The files a stack is read from, in stacking order, without decoding any.

    Parameters
    ----------
    inputs : path or sequence of paths
        Image files and folders (their PNG/JPEG/TIFF files).
    order : {'natural', 'given'}, optional
        As in :func:`open_stack`.
    exclude : sequence of path, optional
        Files a folder may hold that are not slices, e.g. the outputs of the
        run: they are left out with a :class:`StackWarning`, as is a file
        named like the default composite, ``<folder>_composite.<ext>``.

    Returns
    -------
    files : list of Path

    Raises
    ------
    StackError
        If no inputs are given, a path does not exist, a folder holds no
        images, or a file or folder is given twice.
    ValueError
        If `order` is not one of the accepted values.
    """
    check_order(order)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    given = [Path(x) for x in inputs]
    if not given:
        raise StackError("no input slices given")
    _refuse_twice(given)
    skip = {Path(p).resolve() for p in exclude}
    paths = _refuse_twice([p for x in given for p in _expand(x, skip)])
    if order == "natural":
        ordered = sorted(paths, key=natural_key)
        if ordered != paths:
            warnings.warn(
                "inputs were not in natural order; stacking in natural order "
                f"({ordered[0].name}, {ordered[1].name}, ...); use order='given' to keep yours",
                StackWarning,
                stacklevel=2,
            )
        paths = ordered
    return paths


def check_order(order: str) -> None:
    """Check a file-order option.

    Parameters
    ----------
    order : str
        ``'natural'`` or ``'given'`` (see :func:`input_files`).

    Raises
    ------
    ValueError
        If `order` is anything else.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be 'natural' or 'given', got {order!r}")


def _refuse_twice(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise StackError(f"{path} is given twice")
        seen.add(key)
    return paths
