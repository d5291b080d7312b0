"""Read focal stacks one slice at a time.

A stack is a list of files (PNG, JPEG, TIFF; multi-page TIFFs contribute every
page), a folder of such files, or an in-memory array. Formats are detected from
the file's content, not its name, because real data sets ship JPEG bytes in
``.png`` files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import imageio.v3 as iio
import numpy as np
import tifffile

from . import _jpeg
from ._jpeg import DamagedJpeg
from .inputs import (
    IMAGE_SUFFIXES,
    ORDERS,
    StackError,
    StackWarning,
    check_order,
    input_files,
    natural_key,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ORDERS",
    "Stack",
    "StackError",
    "StackWarning",
    "input_files",
    "natural_key",
    "open_stack",
    "read_image",
]


def _sniff(path: Path) -> str:
    """Return 'tiff', 'png', 'jpeg' or 'other' from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return "other"


def _page_array(page: tifffile.TiffPage) -> np.ndarray:
    data = page.asarray()
    # Planar (separate) samples come out as (S, M, N); the pipeline wants (M, N, S).
    if page.axes.startswith("S") and data.ndim == 3:
        data = np.moveaxis(data, 0, -1)
    return data


def _drop_alpha(image: np.ndarray, name: str) -> np.ndarray:
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        warnings.warn(f"{name}: alpha channel dropped", StackWarning, stacklevel=4)
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def _decode(path: Path, page: int | None, check_jpeg: bool) -> np.ndarray:
    kind = _sniff(path)
    if kind == "tiff":
        with tifffile.TiffFile(path) as tif:
            return _page_array(tif.pages[page or 0])
    data = path.read_bytes()
    if kind == "png":
        return imagecodecs.png_decode(data)
    if kind == "jpeg":
        image = _jpeg.decode(data, check=check_jpeg)
        if image.ndim == 3 and image.shape[-1] == 4:
            # CMYK (print) JPEGs: Pillow knows their colour conversion.
            image = iio.imread(data, plugin="pillow", mode="RGB")
        return image
    try:
        return iio.imread(data, plugin="pillow")
    except Exception as exc:
        raise StackError(f"{path}: not a PNG, JPEG or TIFF image") from exc


def _damaged(path: Path, exc: DamagedJpeg) -> StackError:
    return StackError(f"{path}: damaged JPEG ({exc})")


def read_image(path: str | os.PathLike, *, page: int | None = None) -> np.ndarray:
    """Read one image (or one page of a TIFF) as an array.

    Parameters
    ----------
    path : str or path-like
        Image file; the format is detected from its content.
    page : int, optional
        Page of a multi-page TIFF (default: the first).

    Returns
    -------
    image : (M, N) or (M, N, 3) ndarray
        Pixels in the file's own dtype; an alpha channel is dropped with a
        :class:`StackWarning`.

    Raises
    ------
    StackError
        If the file is missing, unreadable, a damaged JPEG (cut short or with
        corrupt data), or not a 2-D grey or RGB image.
    """
    return _read_file(Path(path), page, check_jpeg=True)


def _read_file(path: Path, page: int | None, check_jpeg: bool) -> np.ndarray:
    if not path.is_file():
        raise StackError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise StackError(f"{path}: file is empty")
    try:
        image = _decode(path, page, check_jpeg)
    except StackError:
        raise
    except DamagedJpeg as exc:
        raise _damaged(path, exc) from exc
    except Exception as exc:  # decoders raise many types; the user needs one message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StackError(f"{path}: cannot read image ({reason})") from exc
    image = _drop_alpha(np.asarray(image), path.name)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise StackError(
            f"{path}: expected a grey (M, N) or RGB (M, N, 3) image, got shape {image.shape}"
        )
    if image.dtype.kind not in "uif" or image.dtype.itemsize > 8:
        raise StackError(f"{path}: unsupported pixel type {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise StackError(f"{path}: contains NaN or infinite pixels; stacker needs finite values")
    return image


@dataclass(frozen=True)
class Frame:
    """One slice of a stack: a file, and the page within it for multi-page TIFFs."""

    path: Path
    page: int | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.page is None else f"{self.path.name}[page {self.page}]"


def _frames(path: Path) -> list[Frame]:
    try:
        kind = _sniff(path)
    except OSError as exc:
        raise StackError(f"{path}: cannot open ({exc.strerror})") from exc
    if kind != "tiff":
        return [Frame(path)]
    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes if tif.series else ""
            meta = tif.imagej_metadata or {}
            n = len(tif.pages)
    except Exception as exc:
        raise StackError(f"{path}: cannot read TIFF ({exc})") from exc
    # Pages are taken as Z planes of one grey or RGB image; channels or time
    # points would be stacked as if they were focus steps.
    other = [a for a in axes if a not in "ZYXSQI"]
    if other or meta.get("channels", 1) > 1 or meta.get("frames", 1) > 1:
        raise StackError(
            f"{path}: a TIFF with axes {axes} (channels or time points besides Z planes) "
            "is not supported; give one channel and time point as a Z stack"
        )
    if n == 0:  # a damaged file may still have a TIFF header
        raise StackError(f"{path}: TIFF holds no images")
    return [Frame(path)] if n == 1 else [Frame(path, i) for i in range(n)]


def _memory_map(frame: Frame) -> np.ndarray | None:
    """The frame's pixels as a read-only memory map, or None if the file does not allow it.

    Float images are left to :func:`read_image`, which checks them for NaN.
    """
    if _sniff(frame.path) != "tiff":
        return None
    try:
        with tifffile.TiffFile(frame.path) as tif:
            page = tif.pages[frame.page or 0]
            if not page.is_memmappable or page.dtype.kind not in "ui" or not page.dtype.isnative:
                return None
            planar = page.axes.startswith("S") and len(page.shape) == 3
        image = tifffile.memmap(frame.path, page=frame.page or 0, mode="r")
    except Exception:  # the full decoder gives the user the real reason
        return None
    image = np.moveaxis(image, 0, -1) if planar else image
    return _drop_alpha(image, frame.path.name)


class Stack:
    """A focal stack that yields one slice at a time.

    Use :func:`open_stack` to build one. Iterating decodes each slice on
    demand and checks it against the first slice's shape and dtype, so a whole
    stack is never held in memory (unless it was given as an array).

    Attributes
    ----------
    shape : tuple of int
        Shape of one slice, ``(M, N)`` or ``(M, N, 3)``.
    dtype : numpy.dtype
        Pixel type shared by all slices.
    names : list of str
        One label per slice (file name, with the page for multi-page TIFFs).
    paths : list of Path
        The distinct input files (empty for array input).
    """

    def __init__(
        self,
        frames: list[Frame] | None = None,
        array: np.ndarray | None = None,
        *,
        whole: Iterable[Frame] = (),
    ):
        self._frames = frames or []
        self._array = array
        # Frames whose JPEG stream was found whole: it is checked on the first
        # read only, as a merge reads every slice two or more times (alignment,
        # stacking, each tile).
        self._whole: set[Frame] = set(whole)
        if array is not None:
            self.names = [f"slice {i}" for i in range(len(array))]
            self.shape, self.dtype = tuple(array.shape[1:]), array.dtype
        else:
            self.names = [f.name for f in self._frames]
            first = self._read(self._frames[0])
            self.shape, self.dtype = first.shape, first.dtype
        self.paths = list(dict.fromkeys(f.path for f in self._frames))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._array is not None:
            return self._array[index]
        frame = self._frames[index]
        return self._checked(frame, self._read(frame))

    def _read(self, frame: Frame) -> np.ndarray:
        image = _read_file(frame.path, frame.page, check_jpeg=frame not in self._whole)
        self._whole.add(frame)
        return image

    def grey(self, index: int) -> np.ndarray:
        """Slice `index`, or its luma where the decoder gives that for less.

        A colour JPEG stores luma (Rec. 601, the weights of
        :func:`stacker.focus.to_gray`) beside two chroma channels: decoding
        only it takes three quarters of the time of a full decode, and skips
        the conversion to grey. Registration, which works on grey images,
        reads slices this way.

        Parameters
        ----------
        index : int
            Slice index.

        Returns
        -------
        image : (M, N) or (M, N, 3) ndarray
            The JPEG's luma as (M, N) uint8, or the slice as ``stack[index]``.

        Raises
        ------
        StackError
            If the slice cannot be read, e.g. a damaged JPEG.
        """
        frame = self._frames[index] if self._array is None else None
        if frame is None or _sniff(frame.path) != "jpeg":
            return self[index]
        return self._luma(index)

    def _luma(self, index: int) -> np.ndarray:
        """Slice `index`, a JPEG, as its luma (or whole where the luma decoder fails)."""
        frame = self._frames[index]
        try:
            luma = _jpeg.decode(frame.path.read_bytes(), luma=True, check=frame not in self._whole)
        except DamagedJpeg as exc:
            raise _damaged(frame.path, exc) from exc
        except Exception:  # CMYK and other oddities: the full decoder knows them
            return self[index]
        self._whole.add(frame)
        self._check_shape(frame, luma.shape, self.shape[:2])
        return luma

    def window(self, index: int, *, grey: bool = False) -> np.ndarray:
        """Slice `index` for reading in parts, e.g. one tile at a time.

        Parameters
        ----------
        index : int
            Slice index.
        grey : bool, optional
            Where the decoder gives the slice's luma for less (a colour JPEG),
            give that, as :meth:`grey` does: for readers that only measure.

        Returns
        -------
        image : (M, N) or (M, N, 3) ndarray
            A read-only memory map where the file stores the slice uncompressed
            (integer TIFF), so a part costs only its own bytes; otherwise the
            decoded slice, as ``stack[index]``.
        """
        if self._array is not None:
            return self._array[index]
        frame = self._frames[index]
        if grey and _sniff(frame.path) == "jpeg":
            return self._luma(index)
        mapped = _memory_map(frame)
        return self[index] if mapped is None else self._checked(frame, mapped)

    def _checked(self, frame: Frame, image: np.ndarray) -> np.ndarray:
        self._check_shape(frame, image.shape, self.shape)
        if image.dtype != self.dtype:
            raise StackError(
                f"{frame.name}: pixel type {image.dtype} differs from the first slice's "
                f"{self.dtype} ({self.names[0]})"
            )
        return image

    def _check_shape(self, frame: Frame, shape: tuple, expected: tuple) -> None:
        if shape != expected:
            raise StackError(
                f"{frame.name}: shape {shape} differs from the first slice's "
                f"{expected} ({self.names[0]})"
            )

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


def _check_array_stack(array: np.ndarray) -> np.ndarray:
    if array.ndim == 4 and array.shape[-1] in (2, 4):
        warnings.warn("alpha channel dropped", StackWarning, stacklevel=3)
        array = array[..., :-1]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] != 3):
        raise ValueError(
            f"stack array must have shape (Z, M, N) or (Z, M, N, 3), got {array.shape}"
        )
    if array.shape[0] == 0:
        raise StackError("stack is empty: no slices")
    if array.dtype.kind not in "uif":
        raise ValueError(f"stack array must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise StackError("stack contains NaN or infinite pixels; stacker needs finite values")
    return array


def open_stack(
    inputs: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray],
    *,
    order: str = "natural",
    skip_damaged: bool = False,
) -> Stack:
    """Open a focal stack from files, a folder, a multi-page TIFF or arrays.

    Parameters
    ----------
    inputs : path, (Z, M, N[, 3]) ndarray, sequence of paths or arrays, or Stack
        Image files (every page of a multi-page TIFF is a slice), folders (their
        PNG/JPEG/TIFF files), or slices already in memory. A :class:`Stack` is
        returned as it is.
    order : {'natural', 'given'}, optional
        ``'natural'`` sorts files by name with numbers by value (``z2`` before
        ``z10``), warning if that changes the order given; ``'given'`` keeps
        the order of `inputs`. Pages of one TIFF keep their order.
    skip_damaged : bool, optional
        Check every JPEG file now, and leave out the damaged ones with a
        :class:`StackWarning` each, instead of stopping at the first.

    Returns
    -------
    stack : Stack
        Lazily decoded slices with their common shape and dtype.

    Raises
    ------
    StackError
        If there are no slices, or a file is missing or unreadable (or a
        damaged JPEG, unless `skip_damaged`).
    ValueError
        If `order` is not one of the accepted values.
    """
    check_order(order)
    if isinstance(inputs, Stack):
        return inputs
    if isinstance(inputs, np.ndarray):
        return Stack(array=_check_array_stack(inputs))
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise StackError("no input slices given")
    if all(isinstance(x, np.ndarray) for x in inputs):
        try:
            array = np.stack(inputs)
        except ValueError as exc:
            raise StackError(f"slices differ in shape: {exc}") from exc
        return Stack(array=_check_array_stack(array))
    if any(isinstance(x, np.ndarray) for x in inputs):
        raise ValueError("inputs must be all paths or all arrays, not a mix")

    paths = input_files(inputs, order=order)
    frames = [f for p in paths for f in _frames(p)]
    if not skip_damaged:
        return Stack(frames=frames)
    whole = [f for f in frames if _whole_or_warn(f)]
    if not whole:
        raise StackError("every input slice is a damaged JPEG")
    return Stack(frames=whole, whole=whole)


def _whole_or_warn(frame: Frame) -> bool:
    """False, with a warning, if the frame is a damaged JPEG."""
    if _sniff(frame.path) != "jpeg":
        return True
    try:
        _jpeg.check_stream(frame.path.read_bytes())
    except DamagedJpeg as exc:
        warnings.warn(f"{_damaged(frame.path, exc)}; left out", StackWarning, stacklevel=4)
        return False
    return True
