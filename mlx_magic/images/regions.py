"""Parts of an image: a region cut out before sending, and the pixel cap.

``--region x1,y1,x2,y2`` sends only that part of each image (previews show it
in the context of the whole); ``--max-pixels`` (``MLXMagics.max_image_pixels``)
shrinks an image larger than that before the model's processor sees it, so a
phone photo does not silently become thousands of vision tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

from PIL import Image

from mlx_magic.errors import ImageSourceError
from mlx_magic.images.decoding import LoadedImage, short_source

DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024
"""The default cap on what a vision model is sent: 1 megapixel.

Qwen2-VL-style processors turn every 28×28 pixels into one token and allow up
to 12.8 megapixels by themselves, so a 12-megapixel phone photo would be
~15,300 tokens: half of a 32k context, and a vision tower attending over
~61,000 patches (an attention matrix of ~120 GB in bf16 for 16 heads). At one
megapixel the same photo is ~1,300 tokens (4 % of a 32k context) and ~5,300
patches (under 1 GB), and text in a photo stays legible."""


def parse_region(text: str) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` as four numbers (pixels of the image).

    Raises:
        ValueError: not four numbers, or an empty box (one line).
    """
    parts = [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(value) for value in values):
        raise ValueError(
            f"--region takes four pixel numbers x1,y1,x2,y2 (e.g. 10,20,200,180), not {text!r}"
        )
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(
            f"--region {text}: x2 must be more than x1 and y2 more than y1 (left,top,right,bottom)"
        )
    return x1, y1, x2, y2


def cut_region(loaded: LoadedImage, region: tuple[float, float, float, float]) -> LoadedImage:
    """The part of ``loaded`` inside ``region``, remembering where it came from.

    Raises:
        ImageSourceError: the region lies (partly) outside the image.
    """
    width, height = loaded.image.size
    x1, y1, x2, y2 = region
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ImageSourceError(
            f"--region {_box_text(region)} is outside {short_source(loaded.source)!r}, "
            f"which is {width}×{height}: keep 0 ≤ x ≤ {width} and 0 ≤ y ≤ {height}",
            loaded.source,
        )
    box = (round(x1), round(y1), round(x2), round(y2))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ImageSourceError(f"--region {_box_text(region)} is less than a pixel", loaded.source)
    crop = loaded.image.crop(box)
    digest = hashlib.sha256(f"{loaded.cache_key}:region{box}".encode()).hexdigest()
    return dataclasses.replace(
        loaded,
        image=crop,
        source=f"{loaded.source} [{_box_text(box)}]",
        original_size=crop.size,
        cache_key=digest,
        context=(loaded.image, tuple(float(value) for value in box)),
    )


def capped(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image``, shrunk (aspect kept) to at most ``max_pixels`` pixels."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _box_text(box: tuple[float, ...]) -> str:
    return ",".join(f"{value:g}" for value in box)
