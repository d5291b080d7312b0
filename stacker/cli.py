"""Command-line interface: a thin shell over :mod:`stacker`'s Python API.

``main(argv)`` parses, calls the library, and maps failures to one-line
messages and exit codes: 2 for bad usage or bad input, 1 for anything else.
"""

from __future__ import annotations

import ctypes
import logging
import re
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from . import __version__
from ._console import Progress, WarningTally, user_words
from .align import MODELS, load_transforms
from .depth import DEPTH_FORMATS
from .focus import FOCUS_MEASURES
from .focusmap import focus_map, mask_in_focus, parse_colour, sketch
from .io import IMAGE_SUFFIXES, ORDERS, StackError, input_files, open_stack, read_image
from .outputs import BIT_DEPTHS, OutputError, check_outputs, save, write_image
from .pipeline import ALIGN_FAIL, METHODS
from .pipeline import merge as merge_stack

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
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
BitDepth = _choices("BitDepth", BIT_DEPTHS)


class _Command(TyperCommand):
    """A command that reports Ctrl-C and SIGTERM itself, with usage lines as click writes them."""

    def invoke(self, ctx):
        # Click turns Ctrl-C into a silent exit 130 (after a blank line); the
        # command line says what happened, and tells SIGTERM apart.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from exc

    def collect_usage_pieces(self, ctx) -> list[str]:
        # typer wraps required arguments in braces: INPUTS... reads better than {inputs}...
        pieces = super().collect_usage_pieces(ctx)
        return [re.sub(r"\{(\w+)\}", lambda m: m[1].upper(), p) for p in pieces]


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


# The merge command's options.
_Output = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Composite image (.png/.jpg/.tif); default: <folder>_composite.<ext of the "
        "first slice> beside the slice folder.",
    ),
]
_Depth = Annotated[Path | None, typer.Option(help="Depth map (.png/.tif).")]
_DepthFormat = Annotated[
    DepthFormat, typer.Option(help="index: uint16 slice index; float: float32 TIFF.")
]
_DepthPreviewPath = Annotated[
    Path | None, typer.Option("--depth-preview", help="Colour depth picture with a scale.")
]
_Method = Annotated[
    Method,
    typer.Option(
        help="depthmap: sub-slice depth, blended composite; pyramid: Laplacian-pyramid "
        "fusion; argmax: each pixel from its sharpest slice."
    ),
]
_Measure = Annotated[
    Measure | None,
    typer.Option(
        help="Focus measure (default: variance, the reference local variance, for "
        "argmax; mean-std, which narrows halos, for the other methods)."
    ),
]
_Order = Annotated[Order, typer.Option(help="Slice order: natural (z2 before z10) or given.")]
_Align = Annotated[Align, typer.Option(help="Register slices first: motion model, or none.")]
_AlignRef = Annotated[
    int | None, typer.Option(help="Reference slice index (0-based; default: the middle).")
]
_Crop = Annotated[
    bool, typer.Option(help="Crop to what every aligned slice covers (--no-crop: keep frame).")
]
_Brightness = Annotated[bool, typer.Option(help="Correct exposure flicker between slices.")]
_OnAlignFail = Annotated[
    AlignFail, typer.Option(help="A slice that does not register: keep, drop or error.")
]
_SkipBad = Annotated[
    bool,
    typer.Option(help="Leave out damaged JPEG slices, with a warning, instead of stopping."),
]
_SaveTransforms = Annotated[Path | None, typer.Option(help="Write the transforms found as JSON.")]
_Transforms = Annotated[
    Path | None, typer.Option(help="Apply transforms from a JSON file instead of aligning.")
]
_Tile = Annotated[
    int | None,
    typer.Option(
        help="Stack in square tiles of this many pixels, one at a time, for frames too "
        "large for memory (default: only when the frame needs it).",
        min=16,
    ),
]
_Threads = Annotated[
    int | None,
    typer.Option(help="Worker threads, and threads per OpenCV call (default: all cores).", min=1),
]
_BitDepth = Annotated[BitDepth, typer.Option(help="Composite bit depth: auto keeps the input's.")]


@app.command(cls=_Command)
def merge(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Slice files, a folder, or a multi-page TIFF.", metavar="INPUTS"),
    ],
    output: _Output = None,
    depth: _Depth = None,
    depth_format: _DepthFormat = DepthFormat.index,
    depth_preview_path: _DepthPreviewPath = None,
    method: _Method = Method.depthmap,
    sigma: Sigma = 2.0,
    measure: _Measure = None,
    order: _Order = Order.natural,
    align: _Align = Align.similarity,
    align_ref: _AlignRef = None,
    crop: _Crop = True,
    brightness: _Brightness = True,
    on_align_fail: _OnAlignFail = AlignFail.keep,
    skip_bad: _SkipBad = False,
    save_transforms: _SaveTransforms = None,
    transforms: _Transforms = None,
    tile: _Tile = None,
    threads: _Threads = None,
    bit_depth: _BitDepth = BitDepth.auto,
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
    given = {"composite": output, "depth map": depth, "depth preview": depth_preview_path}
    given["transforms"] = save_transforms
    files = input_files(inputs, order=order.value, exclude=[p for p in given.values() if p])
    given["composite"] = output or default_output(inputs, files)
    outputs = check_outputs(given, inputs=files, clear=True)
    stack = open_stack(files, order="given", skip_damaged=skip_bad)
    # The composite's dtype is known once the first slice is read: its format is checked now.
    out_dtype = stack.dtype if bit_depth.value == "auto" else f"uint{bit_depth.value}"
    check_outputs({"composite": outputs["composite"]}, dtypes={"composite": out_dtype})
    progress = Progress(enabled=not quiet and sys.stderr.isatty())
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
        progress=progress,
    )
    progress(0, len(outputs), stage="writing")
    written = save(
        result,
        outputs["composite"],
        depth=depth,
        depth_format=depth_format.value,
        depth_preview=depth_preview_path,
        transforms=save_transforms,
        bit_depth=bit_depth.value,
        inputs=files,
        names=stack.names,
        shape=stack.shape[:2],
        model="none" if transforms is not None else align.value,
    )
    progress(len(written), len(written), stage="writing")
    _end_lines()
    typer.echo("wrote " + ", ".join(f"{path} ({role})" for role, path in outputs.items()))


def default_output(inputs: list[Path], files: list[Path]) -> Path:
    """Where the composite goes unless ``-o`` says: beside the slices' folder, never in it.

    ``<folder>_composite.<ext>`` for a folder or files in one, with the first
    slice's extension; ``<stem>_composite.<ext>`` beside a single (multi-page) file.

    Parameters
    ----------
    inputs : list of Path
        The inputs as given.
    files : list of Path
        The files they name, in stacking order.

    Returns
    -------
    path : Path
    """
    first = files[0]
    suffix = first.suffix.lower() if first.suffix.lower() in IMAGE_SUFFIXES else ".png"
    if len(inputs) == 1 and inputs[0].is_file():
        return first.with_name(f"{first.stem}_composite{suffix}")
    folder = (inputs[0] if inputs[0].is_dir() else first.parent).resolve()
    return folder.parent / f"{folder.name}_composite{suffix}"


@app.command(cls=_Command)
def focus(
    image: Annotated[Path, typer.Argument(help="One image.", metavar="IMAGE")],
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
    check_outputs({"focus sketch": output, "masked image": masked}, inputs=[image])
    pixels = read_image(image)
    check_outputs({"masked image": masked}, dtypes={"masked image": pixels.dtype})
    relative = focus_map(pixels, sigma=sigma)
    write_image(output, sketch(relative))
    if masked is not None:
        write_image(
            masked, mask_in_focus(pixels, relative, threshold=threshold, background=background)
        )


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


# Which options name each output, for messages about it.
_OUTPUT_FLAGS = {
    "composite": ("-o", "--output"),
    "depth map": ("--depth",),
    "depth preview": ("--depth-preview",),
    "transforms": ("--save-transforms",),
    "focus sketch": ("-o", "--output"),
    "masked image": ("--masked",),
}
_TALLY = WarningTally()


def _end_lines() -> None:
    """End the progress line and print the warnings, before the last line of a run."""
    Progress.finish()
    _TALLY.flush()


def _output_message(exc: OutputError, argv: list[str]) -> str:
    """The output's option as the user typed it (or its role, for the default composite)."""
    typed = [f for f in _OUTPUT_FLAGS.get(exc.role, ()) if f in argv]
    return f"{typed[0] if typed else exc.role} {exc.path}: {user_words(exc.reason)}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


class _Stopped(Exception):
    """A command stopped by Ctrl-C or SIGTERM, carried past click's own handling."""

    def __init__(self, cause: KeyboardInterrupt):
        super().__init__("terminated" if isinstance(cause, Terminated) else "interrupted")
        self.code = 143 if isinstance(cause, Terminated) else 130


def _terminate(signum, frame) -> None:
    raise Terminated


@contextmanager
def _run_environment():
    """Warnings tallied, tifffile's log quiet, SIGTERM raising; all restored afterwards."""
    tifffile_log = logging.getLogger("tifffile")
    level = tifffile_log.level
    # tifffile logs oddities of files it reads; the library's own warnings say what matters.
    tifffile_log.setLevel(logging.CRITICAL + 1)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _TALLY.show
            warnings.simplefilter("always")
            yield
    finally:
        _end_lines()
        tifffile_log.setLevel(level)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


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
    with _run_environment():
        try:
            code = app(args=argv or ["--help"], prog_name="stacker", standalone_mode=False)
            return code if isinstance(code, int) else 0
        except typer.Exit as exc:
            return exc.exit_code
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            return 1
        except _Stopped as exc:
            _end_lines()
            sys.stderr.write(f"error: {exc}\n")
            return exc.code
        except Exception as exc:
            return _report(exc, argv, debug)


def _report(exc: Exception, argv: list[str], debug: bool) -> int:
    """Print one line for a failure; return the exit code."""
    _end_lines()
    if debug:
        traceback.print_exc()
    if isinstance(exc, typer.TyperException):  # bad usage: unknown option, missing argument
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        # typer words a choice error as pydantic does: "Value error, 'x' is not one of ..."
        message = message.replace("Value error, ", "")
        sys.stderr.write(f"error: {message}\n")
        return 2
    if isinstance(exc, OutputError):
        sys.stderr.write(f"error: {_output_message(exc, argv)}\n")
        return 2
    if isinstance(exc, (StackError, ValueError, FileNotFoundError)):
        sys.stderr.write(f"error: {user_words(str(exc))}\n")
        return 2
    # The last line of defence: one line, no traceback, no exception class.
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unexpected failure"
    sys.stderr.write(f"error: {reason} (--debug shows where)\n")
    return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
