"""Decode JPEGs, refusing damaged ones: a cut or overwritten file is an error, not garbage.

libjpeg decodes what it can of a damaged stream, filling what is missing with
grey or reading garbage, and only warns ("Premature end of JPEG file",
"Corrupt JPEG data: ..."). imagecodecs, Pillow and OpenCV keep those warnings
to themselves; simplejpeg's strict mode raises them, so the stream is first
decoded by it, as grey, and the pixels then come from imagecodecs as before.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import simplejpeg


class DamagedJpeg(ValueError):
    """libjpeg found the stream cut short or its data corrupt; the message says which."""


def decode(data: bytes, *, luma: bool = False, check: bool = True) -> np.ndarray:
    """Decode a JPEG stream with libjpeg-turbo, after checking that it is whole.

    Parameters
    ----------
    data : bytes
        The file's content.
    luma : bool, optional
        Decode only the luma of a colour JPEG (as the file stores it).
    check : bool, optional
        Check the stream (:func:`check_stream`: a grey decode, which serves as
        the luma when that is asked for); False for one checked before.

    Returns
    -------
    image : (M, N) or (M, N, C) ndarray
        As ``imagecodecs.jpeg8_decode`` gives it.

    Raises
    ------
    DamagedJpeg
        If libjpeg warns that the stream ends early or its data is corrupt.
    """
    grey = check_stream(data) if check else None
    if luma and grey is not None:
        # The check's grey decode is the luma, as imagecodecs gives it (both are
        # libjpeg-turbo; equal on every JPEG of the real and sample stacks).
        return grey
    return imagecodecs.jpeg8_decode(data, outcolorspace="GRAY" if luma else None)


def check_stream(data: bytes) -> np.ndarray | None:
    """Raise DamagedJpeg if libjpeg warns that the JPEG stream `data` is cut short or corrupt.

    Returns the stream decoded as grey, (M, N) uint8, when libjpeg had nothing
    to warn about; None when it warned of something harmless or cannot read it.
    """
    try:
        grey = simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        message = str(exc).strip()
    else:
        return grey[..., 0] if grey.ndim == 3 else grey
    # A warning stops the strict decode; an error (12-bit data, say, which
    # simplejpeg does not take) stops both, and is left to imagecodecs.
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=False)
    except ValueError:
        return None
    if message.startswith("Premature end of JPEG file"):
        raise DamagedJpeg("premature end of data")
    # The other warnings do not touch the pixels (an unknown JFIF version, a
    # bad ICC profile, ...).
    if message.startswith("Corrupt JPEG data") and "ICC" not in message:
        raise DamagedJpeg("corrupt data" + message.removeprefix("Corrupt JPEG data"))
    return None
