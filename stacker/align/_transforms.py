"""Transforms as a readable JSON file: one matrix per slice, written exactly."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..outputs import atomic_output
from ._geometry import _check_matrix
from ._register import _check_model

_FORMAT, _VERSION = "stacker-transforms", 1


def save_transforms(
    path: str | os.PathLike,
    matrices: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    shape: tuple[int, ...] | None = None,
    model: str | None = None,
) -> None:
    """Write transforms to a readable JSON file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file.
    matrices : sequence of (3, 3) ndarray
        Per slice, maps reference (row, col, 1) to slice (row, col, 1).
    names : sequence of str, optional
        Slice labels; default ``slice 0``, ``slice 1``, ...
    shape : tuple of int, optional
        Shape of the reference frame.
    model : str, optional
        Motion model the matrices were estimated with.
    """
    matrices = [_check_matrix(m, "matrices") for m in matrices]
    names = [f"slice {i}" for i in range(len(matrices))] if names is None else list(names)
    if len(names) != len(matrices):
        raise ValueError(f"names must have {len(matrices)} entries (one per matrix)")
    if model is not None:
        _check_model(model)
    head = {
        "format": _FORMAT,
        "version": _VERSION,
        "convention": "matrix @ [row, col, 1] of the reference frame = [row, col, 1] in the slice",
        "model": model,
        "shape": None if shape is None else [int(s) for s in shape],
    }
    # One line per slice keeps the file readable; floats are written exactly (repr).
    rows = [
        json.dumps({"name": str(n), "matrix": m.tolist()})
        for n, m in zip(names, matrices, strict=True)
    ]
    text = json.dumps(head, indent=2)[:-2] + ',\n  "slices": [\n    ' + ",\n    ".join(rows)
    with atomic_output(path) as tmp:
        tmp.write_text(text + "\n  ]\n}\n", encoding="utf-8")


def load_transforms(path: str | os.PathLike) -> list[np.ndarray]:
    """Read the matrices of a file written by :func:`save_transforms`.

    Parameters
    ----------
    path : str or path-like
        JSON file.

    Returns
    -------
    matrices : list of (3, 3) ndarray of float64
        Per slice, in file order.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
            raise ValueError(f"not a version-{_VERSION} {_FORMAT} file")
        return [_check_matrix(s["matrix"], "matrix") for s in doc["slices"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: cannot read transforms ({exc})") from exc
