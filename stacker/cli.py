"""Command-line interface: a thin shell over :mod:`stacker`'s Python API.

``main(argv)`` parses, calls the library, and maps failures to one-line
messages and exit codes: 2 for bad usage or bad input, 1 for anything else.
"""

from __future__ import annotations

import ctypes
import sys
import time
import traceback
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from ._dtype import convert_dtype
from .align import MODELS, load_transforms
from .align import save_transforms as save_transforms_json
from .depth import DEPTH_FORMATS, depth_preview, encode_depth
from .focus import FOCUS_MEASURES
from .focusmap import focus_map, mask_in_focus, parse_colour, sketch
from .io import (
    ORDERS,
    StackError,
    check_output_path,
    open_stack,
    read_image,
    write_image,
)
from .pipeline import ALIGN_FAIL, METHODS
from .pipeline import merge as merge_stack

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="stacker: all-in-focus composites and depth maps from focal stacks.",
)


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of the library's own option values, so the CLI never drifts from them."""
    return Enum(name, {v if v.isidentifier() else f"v{v}": v for v in values}, type=str)


Order = _choices("Order", ORDERS)
DepthFormat = _choices("DepthFormat", DEPTH_FORMATS)
Method = _choices("Method", METHODS)
Measure = _choices("Measure", tuple(FOCUS_MEASURES))
Align = _choices("Align", MODELS)
AlignFail = _choices("AlignFail", ALIGN_FAIL)
BitDepth = _choices("BitDepth", ("auto", "8", "16"))


class Progress:
    """One self-rewriting stderr line: slices done, elapsed time and ETA."""

    def __init__(self, label: str):
        self.label = label
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (total - done)
        end = "\n" if done == total else ""
        sys.stderr.write(
            f"\r{self.label}: {done}/{total} slices, {elapsed:5.1f} s elapsed, "
            f"{eta:5.1f} s left{end}"
        )
        sys.stderr.flush()


def _progress(quiet: bool, label: str) -> Progress | None:
    return Progress(label) if not quiet and sys.stderr.isatty() else None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stacker {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """stacker: all-in-focus composites and depth maps from focal stacks."""


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")]
Sigma = Annotated[float, typer.Option(help="Focus window: Gaussian sigma in pixels.", min=0.1)]


@app.command()
def merge(
    inputs: Annotated[
        list[Path], typer.Argument(help="Slice files, a folder, or a multi-page TIFF.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Composite image (.png/.jpg/.tif).")
    ],
    depth: Annotated[Path | None, typer.Option(help="Depth map (.png/.tif).")] = None,
    depth_format: Annotated[
        DepthFormat, typer.Option(help="index: uint16 slice index; float: float32 TIFF.")
    ] = DepthFormat.index,
    depth_preview_path: Annotated[
        Path | None, typer.Option("--depth-preview", help="Colour depth picture with a scale.")
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            help="depthmap: sub-slice depth, blended composite; pyramid: Laplacian-pyramid "
            "fusion; argmax: each pixel from its sharpest slice."
        ),
    ] = Method.depthmap,
    sigma: Sigma = 2.0,
    measure: Annotated[
        Measure | None,
        typer.Option(
            help="Focus measure (default: variance, the reference local variance, for "
            "argmax; mean-std, which narrows halos, for the other methods)."
        ),
    ] = None,
    order: Annotated[
        Order, typer.Option(help="Slice order: natural (z2 before z10) or given.")
    ] = Order.natural,
    align: Annotated[
        Align, typer.Option(help="Register slices first: motion model, or none.")
    ] = Align.similarity,
    align_ref: Annotated[
        int | None, typer.Option(help="Reference slice index (0-based; default: the middle).")
    ] = None,
    crop: Annotated[
        bool, typer.Option(help="Crop to what every aligned slice covers (--no-crop: keep frame).")
    ] = True,
    brightness: Annotated[
        bool, typer.Option(help="Correct exposure flicker between slices.")
    ] = True,
    on_align_fail: Annotated[
        AlignFail, typer.Option(help="A slice that does not register: keep, drop or error.")
    ] = AlignFail.keep,
    skip_bad: Annotated[
        bool,
        typer.Option(help="Leave out damaged JPEG slices, with a warning, instead of stopping."),
    ] = False,
    save_transforms: Annotated[
        Path | None, typer.Option(help="Write the transforms found as JSON.")
    ] = None,
    transforms: Annotated[
        Path | None, typer.Option(help="Apply transforms from a JSON file instead of aligning.")
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            help="Stack in square tiles of this many pixels, one at a time, for frames too "
            "large for memory (default: only when the frame needs it).",
            min=16,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Worker threads, and threads per OpenCV call (default: all cores).", min=1
        ),
    ] = None,
    bit_depth: Annotated[
        BitDepth, typer.Option(help="Composite bit depth: auto keeps the input's.")
    ] = BitDepth.auto,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Stack slices into an all-in-focus composite (and a depth map).

    \b
    Examples:
      stacker merge slices/*.tif -o composite.png --depth depth.png
      stacker merge stack.tif -o composite.tif --depth depth.tif --depth-format float
      stacker merge shots/ -o out.jpg --depth-preview depth_color.png
    """
    stack = open_stack(inputs, order=order.value, skip_damaged=skip_bad)
    out_dtype = stack.dtype if bit_depth.value == "auto" else f"uint{bit_depth.value}"
    targets = [(output, out_dtype)]
    if save_transforms is not None:
        targets.append((save_transforms, None))
    if depth is not None:
        targets.append((depth, "float32" if depth_format.value == "float" else "uint16"))
    if depth_preview_path is not None:
        targets.append((depth_preview_path, "uint8"))
    _check_outputs(targets, stack.paths)

    result = merge_stack(
        stack,
        method=method.value,
        sigma=sigma,
        measure=None if measure is None else measure.value,
        align=align.value,
        align_reference=align_ref,
        transforms=None if transforms is None else load_transforms(transforms),
        crop=crop,
        brightness=brightness,
        on_align_fail=on_align_fail.value,
        tile_size=tile,
        threads=threads,
        progress=_progress(quiet, "stacking"),
    )
    if save_transforms is not None:
        save_transforms_json(
            save_transforms,
            result.transforms,
            names=stack.names,
            shape=stack.shape[:2],
            model="none" if transforms is not None else align.value,
        )
    write_image(output, convert_dtype(result.composite, out_dtype))
    if depth is not None:
        write_image(depth, encode_depth(result.depth, depth_format.value))
    if depth_preview_path is not None:
        write_image(depth_preview_path, depth_preview(result.depth, result.n_slices))


def _check_outputs(targets: list[tuple[Path, object]], inputs: list[Path]) -> None:
    resolved = [p.resolve() for p, _ in targets]
    if len(set(resolved)) != len(resolved):
        raise ValueError("two outputs name the same file")
    for path, dtype in targets:
        try:
            check_output_path(path, dtype, inputs=inputs, image=dtype is not None)
        except ValueError as exc:
            if path is not targets[0][0] or "cannot hold" not in str(exc):
                raise
            # The composite (always first) may also be converted on request.
            raise ValueError(f"{exc}, or convert it with --bit-depth 8 or 16") from None


@app.command()
def focus(
    image: Annotated[Path, typer.Argument(help="One image.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Focus sketch (.png/.tif/.jpg).")],
    masked: Annotated[
        Path | None, typer.Option(help="Original colours where in focus, background elsewhere.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Relative focus (0-1) that counts as in focus.", min=0, max=1)
    ] = 0.1,
    background: Annotated[
        str, typer.Option(help="Background: a name, #rrggbb or r,g,b.")
    ] = "white",
    sigma: Sigma = 2.0,
    debug: Debug = False,
) -> None:
    """Map where one image is sharp: dark strokes where in focus.

    \b
    Examples:
      stacker focus photo.jpg -o focus.png
      stacker focus photo.jpg -o focus.png --masked masked.png --background black
    """
    parse_colour(background)
    pixels = read_image(image)
    targets = [(output, "uint8")] + ([(masked, pixels.dtype)] if masked is not None else [])
    _check_outputs(targets, [image])
    relative = focus_map(pixels, sigma=sigma)
    write_image(output, sketch(relative))
    if masked is not None:
        write_image(
            masked, mask_in_focus(pixels, relative, threshold=threshold, background=background)
        )


def _warn_line(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _one_malloc_arena() -> None:
    """Have glibc's allocator serve every thread from one heap.

    By default each thread that allocates under contention gets a heap of its
    own, and a frame freed in one heap cannot serve another thread's next
    frame: the peak memory of a merge then varied by 20 % from run to run
    (383-464 MiB for the same 2000x2000 stack), whatever its length. With one
    heap it varies by 5 %, at the same speed (a merge allocates a few hundred
    large buffers per slice, so the shared lock is idle). A process-wide
    setting, so the command line makes it, not the library; other C libraries
    are left as they are.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError):
        pass


_M_ARENA_MAX = -8  # glibc's malloc.h


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    code : int
        0 on success, 2 for bad usage or input, 1 for other failures.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    _one_malloc_arena()
    with warnings.catch_warnings():
        warnings.showwarning = _warn_line
        warnings.simplefilter("always")
        try:
            code = app(args=argv, prog_name="stacker", standalone_mode=False)
            return code if isinstance(code, int) else 0
        except typer.Exit as exc:
            return exc.exit_code
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            return 1
        except typer.TyperException as exc:  # bad usage: unknown option, missing argument
            if debug:
                traceback.print_exc()
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            sys.stderr.write(f"error: {message}\n")
            return 2
        except (StackError, ValueError, FileNotFoundError) as exc:
            if debug:
                traceback.print_exc()
            sys.stderr.write(f"error: {exc}\n")
            return 2
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            return 130
        except Exception as exc:  # the last line of defence: one line, no traceback
            if debug:
                traceback.print_exc()
            sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
            return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
