"""Boxes and points drawn on an image preview: outlines, label tags, dots."""

from __future__ import annotations

from functools import lru_cache
from typing import Union

from PIL import Image, ImageDraw, ImageFont

from mlx_magic.grounding.values import Grounding

Colour = tuple[int, int, int]
Font = Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]

PALETTE: tuple[Colour, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)
"""One colour per label, in order of first appearance; they repeat after twelve."""

RING = (255, 255, 255)
"""The ring around a point: it shows the dot on any colour."""


def draw_grounding(
    image: Image.Image, grounding: Grounding, *, image_index: int = 0, scale: float = 1.0
) -> Image.Image:
    """A copy of ``image`` with the boxes and points of image ``image_index`` drawn.

    Boxes are outlined, with a tag holding the label above the box (inside it
    when there is no room above); points are filled dots with a white ring.
    Each label keeps one colour of :data:`PALETTE` across all images.

    Args:
        image: The image to draw on, e.g. a thumbnail; it is not modified.
        grounding: Items in pixels of the image as sent.
        image_index: Which image of the cell ``image`` shows.
        scale: ``image``'s width / the width of the image as sent (1.0 for the
            image itself, below 1 for a thumbnail).

    Returns:
        A new image (RGB, or RGBA for an RGBA ``image``).
    """
    canvas = image.copy() if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    if not grounding or canvas.width < 1 or canvas.height < 1:
        return canvas
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(grounding.labels())}
    side = max(canvas.size)
    line = max(2, round(side / 150))
    font = _font(max(12, round(side / 40)))
    draw = ImageDraw.Draw(canvas)
    tags: list[tuple[int, int, str, Colour, bool]] = []

    shown = grounding.on_image(image_index)
    for box in shown.boxes:
        left, top = _pixel(box.x1 * scale, canvas.width), _pixel(box.y1 * scale, canvas.height)
        right = max(_pixel(box.x2 * scale, canvas.width) - 1, left)
        bottom = max(_pixel(box.y2 * scale, canvas.height) - 1, top)
        colour = colours[box.label]
        draw.rectangle((left, top, right, bottom), outline=colour, width=line)
        if box.label:
            tags.append((left, top, box.label, colour, True))

    radius = max(3, round(side / 100))
    ring = max(1, round(line * 0.75))
    for point in shown.points:
        x, y = _pixel(point.x * scale, canvas.width), _pixel(point.y * scale, canvas.height)
        colour = colours[point.label]
        dot = (x - radius, y - radius, x + radius, y + radius)
        draw.ellipse(dot, fill=colour, outline=RING, width=ring)
        if point.label:
            tags.append((x + radius + ring, y - radius, point.label, colour, False))

    # Tags last, so that no outline crosses a label.
    for x, y, label, colour, above in tags:
        _tag(draw, canvas.size, (x, y), label, colour, font, above)
    return canvas


def _tag(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    anchor: tuple[int, int],
    label: str,
    colour: Colour,
    font: Font,
    above: bool,
) -> None:
    """A filled tag with ``label``: its bottom-left at ``anchor`` when ``above``
    and there is room, else its top-left; kept inside the image."""
    left, top, right, bottom = (round(edge) for edge in draw.textbbox((0, 0), label, font=font))
    pad = max(2, (bottom - top) // 5)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = anchor
    if above:
        y = y - height if y - height >= 0 else y
    x = max(0, min(x, size[0] - width))
    y = max(0, min(y, size[1] - height))
    draw.rectangle((x, y, x + width - 1, y + height - 1), fill=colour)
    draw.text((x + pad - left, y + pad - top), label, fill=_ink(colour), font=font)


def _ink(colour: Colour) -> Colour:
    """Black on light tags, white on dark ones."""
    red, green, blue = colour
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def _pixel(value: float, limit: int) -> int:
    return min(max(round(value), 0), limit)


@lru_cache(maxsize=16)
def _font(size: int) -> Font:
    try:
        # Pillow's bundled scalable font (needs FreeType, present in the wheels).
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ImportError):
        return ImageFont.load_default()
