"""Write a merge's outputs all or nothing: checked first, renamed into place together.

Every output is written to a temporary file in its own folder (so the final
rename stays on one file system) and renamed over its target only when all of
them were written. A failure, Ctrl-C or termination on the way removes the
temporary files, so earlier outputs stay as they were. The temporary names
carry the writer's process id, so a later run can recognise and remove those a
killed run left behind.

Examples
--------
>>> import tempfile
>>> from stacker import merge, save
>>> result = merge(np.zeros((2, 8, 8), np.uint8), align="none")
>>> folder = Path(tempfile.mkdtemp())
>>> [p.name for p in save(result, folder / "c.png", depth=folder / "d.tif")]
['c.png', 'd.tif']
>>> sorted(p.name for p in folder.iterdir())
['c.png', 'd.tif']
>>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from ._dtype import convert_dtype
from .depth import DEPTH_FORMATS, encode_depth
from .depth import depth_preview as depth_preview_image

__all__ = [
    "BIT_DEPTHS",
    "OutputError",
    "atomic_output",
    "check_outputs",
    "remove_stale_temps",
    "save",
    "write_image",
]

BIT_DEPTHS = ("auto", "8", "16")
_WRITE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}
# Which dtypes each output format can hold without loss.
_FORMAT_DTYPES = {
    "png": ("uint8", "uint16"),
    "jpeg": ("uint8",),
    "tiff": ("uint8", "uint16", "float32"),
}
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif"}
# ".<name>.stacker-tmp-<pid>-<random><ext>": hidden, and naming the process that writes it.
_TEMP = re.compile(r"^\..+\.stacker-tmp-(?P<pid>\d+)-[0-9a-f]+(\.[^.]*)?$")


class OutputError(ValueError):
    """An output cannot be written where asked.

    Attributes
    ----------
    role : str
        Which output: ``'composite'``, ``'depth map'``, ``'depth preview'``,
        ``'transforms'`` (or ``'image'`` for :func:`write_image`).
    path : Path
        The output path as given.
    reason : str
        What is wrong, in words.
    """

    def __init__(self, role: str, path: Path, reason: str):
        super().__init__(f"{role} {path}: {reason}")
        self.role, self.path, self.reason = role, path, reason


@dataclass(frozen=True)
class _Output:
    role: str
    path: Path
    image: bool = True


def _format_of(output: _Output) -> str:
    fmt = _WRITE_FORMATS.get(output.path.suffix.lower())
    if fmt is None:
        raise OutputError(
            output.role,
            output.path,
            f"cannot tell the format from the extension; use one of {', '.join(_WRITE_FORMATS)}",
        )
    return fmt


def _check_place(output: _Output, inputs: set[Path]) -> None:
    """The explicit checks a write needs, each with its own message."""
    path, folder = output.path, output.path.parent
    if path.is_dir():
        raise OutputError(output.role, path, "is a folder; give a file name")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(output.role, path, f"the output folder {folder} {what}")
    if not _writable(folder):
        raise OutputError(output.role, path, f"the output folder {folder} is not writable")
    if path.resolve() in inputs:
        raise OutputError(output.role, path, "is an input slice; refusing to overwrite it")


def _writable(folder: Path) -> bool:
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    # Permission bits do not tell all (read-only mounts, immutable folders, a
    # superuser's access): creating a file does.
    try:
        _new_temp(folder / "probe").unlink()
    except OSError:
        return False
    return True


def check_outputs(
    outputs: dict[str, str | os.PathLike | None],
    *,
    inputs: Sequence[str | os.PathLike] = (),
    dtypes: dict[str, np.dtype | str] | None = None,
    clear: bool = False,
) -> dict[str, Path]:
    """Check, before any work, that every output can be written where asked.

    Parameters
    ----------
    outputs : dict of str to path
        Output role (``'composite'``, ``'depth map'``, ``'depth preview'``,
        ``'transforms'``) to its file; None values are left out. Every role but
        ``'transforms'`` (JSON) is an image whose extension names its format.
    inputs : sequence of path, optional
        Input files, which are never overwritten.
    dtypes : dict of str to dtype, optional
        Pixel type each image role will be written in, checked against what
        its format can hold.
    clear : bool, optional
        Then remove the temporary files that killed runs left in the output
        folders (see :func:`remove_stale_temps`).

    Returns
    -------
    outputs : dict of str to Path
        The outputs given, as paths.

    Raises
    ------
    OutputError
        If an extension names no known format, a format cannot hold its
        dtype, a folder is missing or not writable, a path is a folder or an
        input, or two outputs are the same file.

    Examples
    --------
    >>> check_outputs({"composite": "nowhere/c.png"})
    Traceback (most recent call last):
    ...
    stacker.outputs.OutputError: composite nowhere/c.png: the output folder nowhere does not exist
    """
    given = {role: Path(p) for role, p in outputs.items() if p is not None}
    resolved = {p.resolve() for p in map(Path, inputs)}
    seen: dict[Path, str] = {}
    for role, path in given.items():
        output = _Output(role, path, image=role != "transforms")
        _check_place(output, resolved)
        fmt = _format_of(output) if output.image else None
        dtype = (dtypes or {}).get(role)
        if fmt is not None and dtype is not None:
            _check_dtype(output, fmt, np.dtype(dtype))
        other = seen.setdefault(path.resolve(), role)
        if other != role:
            raise OutputError(role, path, f"is also given as the {other}")
    if clear:
        for folder in {p.parent for p in given.values()}:
            remove_stale_temps(folder)
    return given


def _check_dtype(output: _Output, fmt: str, dtype: np.dtype) -> None:
    if dtype.name in _FORMAT_DTYPES[fmt]:
        return
    able = ", ".join(_SUFFIX[f] for f, ok in _FORMAT_DTYPES.items() if dtype.name in ok)
    # An integer composite can also be converted on request; other outputs have a fixed type.
    convert = " or ask for bit_depth=8" if output.role == "composite" and dtype.kind == "u" else ""
    raise OutputError(
        output.role,
        output.path,
        f"{fmt.upper()} cannot hold {dtype.name} pixels without loss; "
        f"use a format that can ({able}){convert}",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed runs left in `folder`.

    Only files named as this module names them, whose process no longer runs.

    Parameters
    ----------
    folder : str or path-like
        An output folder.

    Returns
    -------
    removed : list of Path
        The files removed (none on Windows, where a process cannot be probed
        without being signalled).
    """
    if sys.platform == "win32":
        return []
    removed = []
    for entry in os.scandir(folder):
        match = _TEMP.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        if _pid_alive(int(match["pid"])):
            continue
        Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def _new_temp(path: Path) -> Path:
    """Create an empty temporary file beside `path`, named so a later run can tell whose it was."""
    while True:
        tmp = path.with_name(
            f".{path.name}.stacker-tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
        )
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path beside `path`, renamed onto it if the block succeeds.

    A failure inside the block removes the temporary file, so no partial
    output is left and any earlier file at `path` stays intact.

    Parameters
    ----------
    path : str or path-like
        The final output file.

    Yields
    ------
    tmp : Path
        Where to write.
    """
    with _all_or_nothing([Path(path)]) as temps:
        yield temps[0]


@contextmanager
def _all_or_nothing(paths: list[Path]) -> Iterator[list[Path]]:
    """Temporary files for `paths`, all renamed into place if the block succeeds, else removed."""
    temps: list[Path] = []
    try:
        for path in paths:
            temps.append(_new_temp(path))
        yield temps
        with _signals_held():
            for tmp, path in zip(temps, paths, strict=True):
                os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while outputs are renamed, so that none stops half done.

    A signal that came meanwhile goes to its handler when the block ends.
    Handlers can only be changed in the main thread; elsewhere signals pass.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *args: caught.append(args)) for s in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in caught[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def _encode(tmp: Path, image: np.ndarray, fmt: str, quality: int) -> None:
    image = np.ascontiguousarray(image)
    # Deflate at level 1 after differencing: on photographs it compresses
    # better than level 6 without the differencing, at half the time; PNG's
    # level 6 takes five times level 1's time to save about 6 % more.
    if fmt == "tiff":
        tifffile.imwrite(
            tmp,
            image,
            photometric="rgb" if image.ndim == 3 else "minisblack",
            compression="zlib",
            compressionargs={"level": 1},
            predictor=True,
        )
        return
    if fmt == "png":
        encoded = imagecodecs.png_encode(image, level=1)
    else:
        encoded = imagecodecs.jpeg8_encode(image, level=quality)
    tmp.write_bytes(encoded)


def write_image(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> None:
    """Write an image atomically: to a temporary file, then renamed into place.

    A failure leaves no partial file, and any earlier file at `path` intact.

    Parameters
    ----------
    path : str or path-like
        Output file; ``.png``, ``.jpg``/``.jpeg`` or ``.tif``/``.tiff``.
    image : (M, N) or (M, N, 3) ndarray
        uint8 or uint16 (PNG, TIFF), uint8 (JPEG) or float32 (TIFF).
    quality : int, optional
        JPEG quality, 1-100.

    Raises
    ------
    OutputError
        If the extension names no known format or the format cannot hold the
        image's dtype.
    """
    output = _Output("image", Path(path))
    fmt = _format_of(output)
    _check_dtype(output, fmt, image.dtype)
    with atomic_output(output.path) as tmp:
        _encode(tmp, image, fmt, quality)


def _composite_dtype(composite: np.ndarray, bit_depth: str) -> np.dtype:
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"bit_depth must be one of {', '.join(BIT_DEPTHS)}; got {bit_depth!r}")
    return composite.dtype if bit_depth == "auto" else np.dtype(f"uint{bit_depth}")


def save(
    result,
    composite: str | os.PathLike,
    *,
    depth: str | os.PathLike | None = None,
    depth_format: str = "index",
    depth_preview: str | os.PathLike | None = None,
    transforms: str | os.PathLike | None = None,
    bit_depth: str = "auto",
    quality: int = 95,
    inputs: Sequence[str | os.PathLike] = (),
    names: Sequence[str] | None = None,
    shape: tuple[int, ...] | None = None,
    model: str | None = None,
) -> list[Path]:
    """Write a merge's outputs all or nothing.

    Every output is checked, then written to a temporary file beside its
    target; only when all were written are they renamed into place. On any
    failure (or Ctrl-C) the temporary files are removed and earlier files at
    the targets are left as they were.

    Parameters
    ----------
    result : MergeResult
        What :func:`stacker.merge` returned.
    composite : str or path-like
        The composite image (``.png``, ``.jpg``, ``.tif``).
    depth : str or path-like, optional
        The depth map, encoded as `depth_format`.
    depth_format : {'index', 'float'}, optional
        ``'index'``: nearest slice as uint16 (PNG or TIFF); ``'float'``:
        sub-slice depth as float32 (TIFF).
    depth_preview : str or path-like, optional
        A colour picture of the depth with a scale.
    transforms : str or path-like, optional
        The registration transforms as JSON (see
        :func:`stacker.align.save_transforms`).
    bit_depth : {'auto', '8', '16'}, optional
        The composite's bit depth; ``'auto'`` keeps the input's dtype.
    quality : int, optional
        JPEG quality, 1-100.
    inputs : sequence of path, optional
        Input files, which are never overwritten.
    names, shape, model : optional
        For the transforms file: a label per input slice (default:
        ``result.names``), the reference frame's shape and the motion model.

    Returns
    -------
    written : list of Path
        The files written, composite first.

    Raises
    ------
    OutputError
        If an output cannot be written where asked (see :func:`check_outputs`),
        or writing it fails, e.g. the disk is full.
    ValueError
        If `depth_format` or `bit_depth` is not valid.
    """
    if depth_format not in DEPTH_FORMATS:
        raise ValueError(f"depth_format must be one of {DEPTH_FORMATS}; got {depth_format!r}")
    out_dtype = _composite_dtype(result.composite, bit_depth)
    roles = {
        "composite": composite,
        "depth map": depth,
        "depth preview": depth_preview,
        "transforms": transforms,
    }
    dtypes = {
        "composite": out_dtype,
        "depth map": "float32" if depth_format == "float" else "uint16",
        "depth preview": "uint8",
    }
    given = check_outputs(roles, inputs=inputs, dtypes=dtypes, clear=True)
    _write_all(given, result, out_dtype, depth_format, quality, (names, shape, model))
    return list(given.values())


def _write_all(
    given: dict[str, Path],
    result,
    out_dtype: np.dtype,
    depth_format: str,
    quality: int,
    transforms_meta: tuple,
) -> None:
    images = {
        "composite": lambda: convert_dtype(result.composite, out_dtype),
        "depth map": lambda: encode_depth(result.depth, depth_format),
        "depth preview": lambda: depth_preview_image(result.depth, result.n_slices),
    }
    with _all_or_nothing(list(given.values())) as temps:
        for (role, path), tmp in zip(given.items(), temps, strict=True):
            try:
                if role == "transforms":
                    _write_transforms(tmp, result, *transforms_meta)
                else:
                    _encode(tmp, images[role](), _WRITE_FORMATS[path.suffix.lower()], quality)
            except OSError as exc:
                # The user knows the output, not the temporary file the error names.
                raise OutputError(role, path, f"cannot be written ({exc.strerror or exc})") from exc


def _write_transforms(tmp: Path, result, names, shape, model) -> None:
    # Imported here: the align package imports this module for atomic_output.
    from .align import save_transforms

    if names is None and len(result.names) == len(result.transforms):
        names = result.names
    save_transforms(tmp, result.transforms, names=names, shape=shape, model=model)
