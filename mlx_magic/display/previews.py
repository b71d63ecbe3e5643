"""Thumbnails of the images sent to a vision model, as one display output.

The bundle has three forms of the same previews: HTML (thumbnails side by
side, each with its caption) for live frontends, a PNG contact sheet that a
saved notebook or nbconvert shows as an image, and plain text captions.

Each HTML thumbnail is the smaller of its PNG and JPEG encodings: a photo is
several times smaller as JPEG, a drawing or chart smaller (and sharper) as
PNG. The output is sent and saved with both forms, so this keeps it small.

Boxes and points found in the answer are drawn on the thumbnails (at the
thumbnail's own resolution, so lines stay sharp); a region cut with
``--region`` or ``box.crop()`` is shown after the whole image it came from,
outlined there.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Collection, Optional, Sequence

from mlx_magic.images import LoadedImage, png_bytes, thumbnail

if TYPE_CHECKING:
    from PIL import Image

    from mlx_magic.grounding import Grounding
    from mlx_magic.grounding.marks import Mark

PREVIEW_MAX_SIDE = 256
_GAP = 8


def image_caption(
    loaded: LoadedImage,
    processed_size: Optional[tuple[int, int]] = None,
    vision_tokens: Optional[int] = None,
) -> str:
    """``"photo.jpg · 4032×3024 → 1176×882 · 1,323 tokens"``: what the image cost."""
    caption = loaded.caption
    if processed_size:
        width, height = processed_size
        if (width, height) != loaded.image.size:
            caption += f" → {width}×{height}"
    if vision_tokens:
        caption += f" · {vision_tokens:,} tokens"
    return caption


@dataclass(frozen=True)
class Tile:
    """One picture of the previews: a thumbnail and its caption; ``image`` is
    the cell's image it shows (``None`` for the whole image a region came
    from), ``scale`` the image's width / the thumbnail's."""

    thumb: Image.Image
    caption: str
    image: Optional[int] = None
    scale: float = 1.0

    @cached_property
    def url(self) -> str:
        """The thumbnail as a ``data:`` URL (encoded once: the board and the HTML share it)."""
        return data_url(self.thumb)


def preview_tiles(
    images: Sequence[LoadedImage],
    max_side: int = PREVIEW_MAX_SIDE,
    *,
    captions: Optional[Sequence[str]] = None,
    grounding: Optional[Grounding] = None,
) -> list[Tile]:
    """The thumbnails of the previews, grounding drawn, each region after its whole."""
    captions = list(captions) if captions is not None else [loaded.caption for loaded in images]
    tiles: list[Tile] = []
    for index, (loaded, caption) in enumerate(zip(images, captions)):
        if loaded.context is not None:
            tiles.append(Tile(_in_context(loaded, max_side), "where the region lies"))
        thumb = thumbnail(loaded.image, max_side)
        scale = thumb.width / max(1, loaded.image.width)
        if grounding:
            from mlx_magic.grounding import draw_grounding

            thumb = draw_grounding(thumb, grounding, image_index=index, scale=scale)
        tiles.append(Tile(thumb, caption, index, 1 / scale if scale else 1.0))
    return tiles


def preview_bundle(
    images: Sequence[LoadedImage],
    max_side: int = PREVIEW_MAX_SIDE,
    *,
    captions: Optional[Sequence[str]] = None,
    grounding: Optional[Grounding] = None,
    marks: Sequence[Mark] = (),
    named: Collection[int] = (),
    tiles: Optional[list[Tile]] = None,
) -> dict:
    """A MIME bundle showing a thumbnail and caption of every image.

    Args:
        images: the cell's images, in order.
        captions: one per image (default: each image's own caption).
        grounding: a :class:`~mlx_magic.grounding.Grounding` to draw.
        marks: numbered marks to draw (:mod:`mlx_magic.grounding.marks`);
            ``named``: the numbers an answer named, which stand out.
        tiles: :func:`preview_tiles` already made of the same arguments.
    """
    captions = list(captions) if captions is not None else [loaded.caption for loaded in images]
    if tiles is None:
        tiles = preview_tiles(images, max_side, captions=captions, grounding=grounding)
    pictures = [_with_marks(tile, marks, named) for tile in tiles]
    figures = []
    for thumb, tile in zip(pictures, tiles):
        src = tile.url if thumb is tile.thumb else data_url(thumb)
        figures.append(
            '<figure style="margin: 0; text-align: center">'
            f'<img class="mlx-magic-preview" src="{src}" '
            f'width="{thumb.width}" height="{thumb.height}" alt="{html.escape(tile.caption)}"/>'
            '<figcaption style="font-size: 0.8em; opacity: 0.75">'
            f"{html.escape(tile.caption)}</figcaption></figure>"
        )
    sheet = contact_sheet(pictures, _GAP)
    text = [f"[image {i}: {caption}]" for i, caption in enumerate(captions, 1)]
    if grounding:
        text += [_item_line(item) for item in (*grounding.boxes, *grounding.points)]
    text += [f"[{mark}]" for mark in marks]
    return {
        "text/html": '<div class="mlx-magic-previews" style="display: flex; gap: 8px; '
        f'flex-wrap: wrap; align-items: flex-end">{"".join(figures)}</div>',
        "image/png": base64.b64encode(png_bytes(sheet)).decode("ascii"),
        "text/plain": "\n".join(text),
    }


def data_url(picture: Image.Image) -> str:
    """``data:image/...;base64,...``: the smaller of the picture's PNG and JPEG."""
    mime, encoded = _smallest_encoding(picture)
    return f"data:{mime};base64,{base64.b64encode(encoded).decode('ascii')}"


def _with_marks(tile: Tile, marks: Sequence[Mark], named: Collection[int]) -> Image.Image:
    if not marks or tile.image is None:
        return tile.thumb
    from mlx_magic.grounding.mark_drawing import draw_marks

    return draw_marks(tile.thumb, marks, image_index=tile.image, scale=1 / tile.scale, named=named)


def video_strip_bundle(source: str, frames: Sequence, timestamps: Sequence[float]) -> dict:
    """The frames sent from a video, side by side, each with its time."""

    from mlx_magic.images.decoding import short_source

    figures = []
    for frame, at in zip(frames, timestamps):
        figures.append(
            '<figure style="margin: 0; text-align: center">'
            f'<img class="mlx-magic-frame" src="{data_url(frame)}" '
            f'width="{frame.width}" height="{frame.height}" alt="{at:.1f} s"/>'
            f'<figcaption style="font-size: 0.75em; opacity: 0.75">{at:.1f} s</figcaption>'
            "</figure>"
        )
    gap = 4
    sheet = contact_sheet(list(frames), gap)
    span = f"{timestamps[0]:.1f}–{timestamps[-1]:.1f} s" if timestamps else ""
    caption = f"{short_source(source)} · {len(frames)} frames · {span}"
    return {
        "text/html": f'<div class="mlx-magic-video"><div style="display: flex; gap: {gap}px; '
        f'overflow-x: auto">{"".join(figures)}</div><div style="font-size: 0.8em; '
        f'opacity: 0.75">{html.escape(caption)}</div></div>',
        "image/png": base64.b64encode(png_bytes(sheet)).decode("ascii"),
        "text/plain": f"[video: {caption}]",
    }


def contact_sheet(pictures: list[Image.Image], gap: int) -> Image.Image:
    """The pictures side by side on white, ``gap`` pixels apart: the PNG form a
    saved notebook and nbconvert show."""
    from PIL import Image

    sheet = Image.new(
        "RGB",
        (
            sum(p.width for p in pictures) + gap * (len(pictures) - 1),
            max(p.height for p in pictures),
        ),
        "white",
    )
    left = 0
    for picture in pictures:
        sheet.paste(picture, (left, 0))
        left += picture.width + gap
    return sheet


def grounding_of(result: Any) -> Grounding:
    """The boxes and points of an ``MLXResult`` as one :class:`Grounding`."""
    from mlx_magic.grounding import Grounding

    return Grounding(boxes=tuple(result.boxes), points=tuple(result.points))


def grounding_metadata(result: Any) -> dict:
    """An ``MLXResult``'s boxes, points and image costs, as the saved output's metadata."""
    return {
        "boxes": [box.as_dict() for box in result.boxes],
        "points": [point.as_dict() for point in result.points],
        "images": [
            {key: list(value) if isinstance(value, tuple) else value for key, value in i.items()}
            for i in result.images
        ],
    }


def grounding_lines(grounding: Grounding) -> list[str]:
    """One line per box and point, as a terminal shows them."""
    return [_item_line(item) for item in (*grounding.boxes, *grounding.points)]


def _item_line(item: Any) -> str:
    # A Box or a Point, told apart by its attributes (the callers walk both as one tuple).
    label = f"{item.label!r} " if item.label else ""
    where = (
        f"({item.x1:.0f}, {item.y1:.0f})–({item.x2:.0f}, {item.y2:.0f})"
        if hasattr(item, "x2")
        else f"({item.x:.0f}, {item.y:.0f})"
    )
    kind = "box" if hasattr(item, "x2") else "point"
    return f"[{kind} {label}{where} on image {item.image + 1}]"


def _in_context(loaded: LoadedImage, max_side: int) -> Image.Image:
    from mlx_magic.grounding import region_context

    parent, box = loaded.context  # type: ignore[misc]  # checked by the caller
    return region_context(parent, box, max_side)


def _smallest_encoding(thumb: Image.Image) -> tuple[str, bytes]:
    import io

    png = png_bytes(thumb)
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format="JPEG", quality=85)
    jpeg = buffer.getvalue()
    return ("image/jpeg", jpeg) if len(jpeg) < len(png) else ("image/png", png)
