"""Encodings of images for display: thumbnails and PNG bytes."""

from __future__ import annotations

import io

from PIL import Image

from mlx_magic.images.decoding import ALPHA_MODES


def thumbnail(image: Image.Image, max_side: int = 256) -> Image.Image:
    """A copy scaled so its longest side is at most ``max_side``, aspect kept.

    Args:
        image: Any PIL image; it is not modified.
        max_side: Longest side of the result, in pixels. Smaller images are
            copied, never enlarged.

    Returns:
        A new image.

    Raises:
        ValueError: ``max_side`` is below 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return small


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG, e.g. for a preview in a notebook.

    Args:
        image: Any PIL image; modes PNG cannot store are converted to RGB(A).

    Returns:
        The PNG file bytes.
    """
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if image.mode in ALPHA_MODES else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
