"""Sharp images for the quality benchmark's photograph scenes.

Procedural textures are detailed everywhere, so every focus measure finds its peak; the
photographs people stack are not: large smooth areas (paper, sky, a cat's fur out of reach
of the window), strong edges beside them (print, coins, a rocket against the sky), specular
highlights and foreground objects over a distant background. These scenes render such
pictures, taken from scikit-image's bundled sample images (public domain or CC0, see
``skimage.data``; ``pip install -e ".[bench]"``), over the benchmark's height fields.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from stacker import synthetic

# Images shipped inside the scikit-image wheel (the others need a download).
PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
)
LUMA = np.array([0.299, 0.587, 0.114])


def photo(name: str, shape: tuple[int, int], channels: int | None) -> np.ndarray:
    """A bundled sample image as float in [0, 1], scaled to cover `shape` and centre-cropped."""
    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {', '.join(PHOTOS)}, got {name!r}")
    try:
        from skimage import data
    except ImportError as exc:
        raise SystemExit(
            'the photograph scenes need scikit-image: pip install -e ".[bench]"'
        ) from exc
    image = np.asarray(getattr(data, name)(), np.float64) / 255
    if image.ndim == 3 and channels is None:
        image = image[..., :3] @ LUMA
    elif image.ndim == 2 and channels:
        image = np.repeat(image[..., None], channels, axis=-1)
    zoom = max(shape[0] / image.shape[0], shape[1] / image.shape[1])
    if zoom > 1:
        factors = (zoom, zoom) + (1,) * (image.ndim - 2)
        image = np.clip(ndi.zoom(image, factors, order=3), 0, 1)
    top, left = (image.shape[0] - shape[0]) // 2, (image.shape[1] - shape[1]) // 2
    return image[top : top + shape[0], left : left + shape[1]].astype(np.float32)


def with_front(back: np.ndarray, front: np.ndarray, height: np.ndarray) -> np.ndarray:
    """`front` where the height field stands above half its range (an object), `back` elsewhere."""
    inside = height >= 0.5
    return np.where(inside[..., None] if back.ndim == 3 else inside, front, back)


def add_highlights(image: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Saturated specular glints: `count` small bright discs at random places."""
    rng = np.random.default_rng(seed + 2000)
    rows, cols = np.indices(image.shape[:2], dtype=np.float64)
    out = image.copy()
    for _ in range(count):
        cy, cx = rng.uniform(0, image.shape[0]), rng.uniform(0, image.shape[1])
        radius = rng.uniform(1.0, 3.5)
        glint = np.clip(radius + 0.5 - np.hypot(rows - cy, cols - cx), 0, 1)
        if image.ndim == 3:
            glint = glint[..., None]
        out = out * (1 - glint) + glint
    return out.astype(np.float32)


def jpeg_roundtrip(stack: np.ndarray, quality: int) -> np.ndarray:
    """Each 8-bit slice encoded as a camera JPEG (4:2:0 chroma) at `quality` and decoded."""
    if stack.dtype != np.uint8:
        raise ValueError("JPEG scenes must be 8-bit")
    out = np.empty_like(stack)
    for k, image in enumerate(stack):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=2)
        out[k] = np.asarray(Image.open(buffer))
    return out


def sharp_image(scene, shape: tuple[int, int], field: np.ndarray) -> np.ndarray:
    """The scene's all-in-focus picture: procedural, a photograph, or one over another."""
    if scene.photo is None:
        image = synthetic.texture(shape, channels=scene.channels, seed=scene.seed)
    else:
        image = photo(scene.photo, shape, scene.channels)
        if scene.front is not None:
            image = with_front(image, photo(scene.front, shape, scene.channels), field)
    if scene.highlights:
        image = add_highlights(image, scene.highlights, scene.seed)
    return image
