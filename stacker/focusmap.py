"""Where is one photograph sharp? Focus maps of a single image."""

from __future__ import annotations

import numpy as np

from .focus import focus_measure

__all__ = ["focus_map", "mask_in_focus", "parse_colour", "sketch"]

_NAMED_COLOURS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
}


def focus_map(image: np.ndarray, *, sigma: float = 2.0) -> np.ndarray:
    """Relative sharpness of each pixel of one image, in [0, 1].

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        Grey or RGB image, any numeric dtype.
    sigma : float, optional
        Focus window (Gaussian standard deviation) in pixels.

    Returns
    -------
    focus : (M, N) ndarray of float32
        Local standard deviation (square root of the local variance), divided
        by its maximum: 1 at the sharpest pixel, 0 where the image is flat.
        The square root keeps the map's contrast readable; the order of
        pixels is that of the variance.

    Examples
    --------
    >>> img = np.zeros((40, 40)); img[20:, :] = 1
    >>> f = focus_map(img)
    >>> float(f.max()), float(f[0, 0])
    (1.0, 0.0)
    """
    std = np.sqrt(focus_measure(image, sigma=sigma))
    peak = std.max()
    return std / peak if peak > 0 else std


def sketch(focus: np.ndarray) -> np.ndarray:
    """Render a focus map as a pencil sketch: dark where sharp, white where not.

    Parameters
    ----------
    focus : (M, N) ndarray
        Values in [0, 1], as from :func:`focus_map`.

    Returns
    -------
    sketch : (M, N) ndarray of uint8
        ``255 * (1 - focus)``.
    """
    return np.rint(255 * (1 - np.clip(focus, 0, 1))).astype(np.uint8)


def parse_colour(colour: str) -> tuple[int, int, int]:
    """Parse a colour name (``white``), ``#rrggbb`` or ``r,g,b`` into 8-bit RGB.

    Parameters
    ----------
    colour : str
        The colour.

    Returns
    -------
    rgb : tuple of int
        Three values in 0..255.

    Examples
    --------
    >>> parse_colour("#ff8000"), parse_colour("0,128,255")
    ((255, 128, 0), (0, 128, 255))
    """
    text = colour.strip().lower()
    if text in _NAMED_COLOURS:
        return _NAMED_COLOURS[text]
    try:
        if text.startswith("#") and len(text) == 7:
            rgb = tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(
            f"colour must be a name ({', '.join(_NAMED_COLOURS)}), #rrggbb or r,g,b "
            f"with values 0-255, got {colour!r}"
        )
    return rgb


def mask_in_focus(
    image: np.ndarray,
    focus: np.ndarray,
    *,
    threshold: float = 0.1,
    background: str | tuple[int, int, int] = "white",
) -> np.ndarray:
    """Keep the image where it is in focus and paint the rest a flat colour.

    Parameters
    ----------
    image : (M, N) or (M, N, 3) ndarray
        The image, uint8, uint16 or float in [0, 1].
    focus : (M, N) ndarray
        Relative focus in [0, 1], as from :func:`focus_map`.
    threshold : float, optional
        Pixels with ``focus >= threshold`` count as in focus.
    background : str or tuple of int, optional
        Colour for out-of-focus pixels (see :func:`parse_colour`), 8-bit RGB.

    Returns
    -------
    masked : (M, N, 3) ndarray
        RGB image in `image`'s dtype (grey input is expanded to RGB so the
        background can have a colour).
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if focus.shape != image.shape[:2]:
        raise ValueError(f"focus shape {focus.shape} != image shape {image.shape[:2]}")
    rgb = parse_colour(background) if isinstance(background, str) else tuple(background)
    out = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image.copy()
    scale = np.iinfo(image.dtype).max / 255 if image.dtype.kind == "u" else 1 / 255
    fill = np.asarray(rgb, dtype=np.float64) * scale
    out[focus < threshold] = fill.astype(out.dtype) if out.dtype.kind == "f" else np.rint(fill)
    return out
