"""Thumbnails of the images sent to a vision model, as one display output.

The bundle has three forms of the same previews: HTML (thumbnails side by
side, each with its caption) for live frontends, a PNG contact sheet that a
saved notebook or nbconvert shows as an image, and plain text captions.

Each HTML thumbnail is the smaller of its PNG and JPEG encodings: a photo is
several times smaller as JPEG, a drawing or chart smaller (and sharper) as
PNG. The output is sent and saved with both forms, so this keeps it small.
"""

from __future__ import annotations

import base64
import html

from mlx_magic.images import LoadedImage, png_bytes, thumbnail

PREVIEW_MAX_SIDE = 256
_GAP = 8


def preview_bundle(images: list[LoadedImage], max_side: int = PREVIEW_MAX_SIDE) -> dict:
    """A MIME bundle showing a thumbnail and caption of every image."""
    from PIL import Image

    thumbs = [thumbnail(loaded.image, max_side) for loaded in images]
    figures = []
    for loaded, thumb in zip(images, thumbs):
        mime, encoded = _smallest_encoding(thumb)
        data = base64.b64encode(encoded).decode("ascii")
        figures.append(
            '<figure style="margin: 0; text-align: center">'
            f'<img class="mlx-magic-preview" src="data:{mime};base64,{data}" '
            f'width="{thumb.width}" height="{thumb.height}" alt="{html.escape(loaded.caption)}"/>'
            '<figcaption style="font-size: 0.8em; opacity: 0.75">'
            f"{html.escape(loaded.caption)}</figcaption></figure>"
        )
    sheet = Image.new(
        "RGB",
        (sum(t.width for t in thumbs) + _GAP * (len(thumbs) - 1), max(t.height for t in thumbs)),
        "white",
    )
    left = 0
    for thumb in thumbs:
        sheet.paste(thumb, (left, 0))
        left += thumb.width + _GAP
    return {
        "text/html": '<div class="mlx-magic-previews" style="display: flex; gap: 8px; '
        f'flex-wrap: wrap; align-items: flex-end">{"".join(figures)}</div>',
        "image/png": base64.b64encode(png_bytes(sheet)).decode("ascii"),
        "text/plain": "\n".join(f"[image {i}: {img.caption}]" for i, img in enumerate(images, 1)),
    }


def _smallest_encoding(thumb) -> tuple[str, bytes]:
    import io

    png = png_bytes(thumb)
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format="JPEG", quality=85)
    jpeg = buffer.getvalue()
    return ("image/jpeg", jpeg) if len(jpeg) < len(png) else ("image/png", png)
