"""Register the slices of a focal stack to a reference slice before stacking.

Focus breathing changes the magnification between slices, rails drift and a bumped tripod turns
the frame, while each slice is sharp at a different depth. Slices are therefore compared as
band-passed pyramids (blind to the haze of defocus) by the enhanced correlation coefficient.

A matrix is a 3x3 float64 homogeneous map, in (row, col) pixels, from reference-frame
coordinates to coordinates in the moving slice: the aligned slice is the moving slice sampled at
``matrix @ [r, c, 1]``, as ``scipy.ndimage.affine_transform(moving, matrix[:2, :2],
offset=matrix[:2, 2])`` computes it.

One job per private module: :func:`estimate_transform` registers a pair (``_register``, with
its global search in ``_phase`` and its refinement in ``_ecc``), :func:`estimate_stack_transforms`
chains pairs over a stack (``_chain``), :func:`warp` and :func:`common_crop` resample into the
reference frame (``_warp``), and :func:`save_transforms` and :func:`load_transforms` keep the
matrices in a file (``_transforms``); ``_geometry`` holds the matrix checks they share.
"""

from ._chain import MIN_MATCH, estimate_stack_transforms
from ._register import MODELS, estimate_transform
from ._transforms import load_transforms, save_transforms
from ._warp import common_crop, warp

__all__ = [
    "MIN_MATCH",
    "MODELS",
    "common_crop",
    "estimate_stack_transforms",
    "estimate_transform",
    "load_transforms",
    "save_transforms",
    "warp",
]
