"""stacker: all-in-focus composites and depth maps from focal stacks.

The pipeline streams slices through one module per stage:
:mod:`stacker.inputs` (which files), :mod:`stacker.io` (read), :mod:`stacker.align` (registration),
:mod:`stacker.exposure` (brightness gain), :mod:`stacker.focus` (focus measure),
:mod:`stacker.select` (per-pixel focus peak, sub-slice depth, confidence),
:mod:`stacker.resolve` (whole-frame depth: spill rejected, gaps filled, smoothed),
:mod:`stacker.composite` and :mod:`stacker.pyramid` (all-in-focus image) and
:mod:`stacker.depth` (depth encodings and preview), orchestrated by :func:`stacker.merge`
with :mod:`stacker.plan` (reference, registration, frame, tiles), :mod:`stacker.passes`
(the passes over the slices) and :mod:`stacker.methods` (each method's running state).
:func:`stacker.save` (:mod:`stacker.outputs`) writes a merge's outputs all or nothing.
:mod:`stacker.synthetic` renders focal stacks with known truth.
"""

__version__ = "0.1.0"

from .composite import composite_from_index
from .focus import focus_measure
from .focusmap import focus_map
from .io import StackError, StackWarning, open_stack, read_image
from .outputs import OutputError, save, write_image
from .pipeline import MergeResult, merge
from .select import select_sharpest

__all__ = [
    "MergeResult",
    "OutputError",
    "StackError",
    "StackWarning",
    "__version__",
    "composite_from_index",
    "focus_map",
    "focus_measure",
    "merge",
    "open_stack",
    "read_image",
    "save",
    "select_sharpest",
    "write_image",
]
