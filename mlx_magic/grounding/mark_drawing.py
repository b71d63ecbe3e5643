"""Marks drawn numbered on an image: what ``--marks`` sends (Set-of-Marks) and
what previews show, the marks an answer named standing out."""

from __future__ import annotations

from typing import Collection, Sequence

from PIL import Image, ImageDraw

from mlx_magic.grounding.drawing import PALETTE, RING, _font, _pixel, _tag
from mlx_magic.grounding.marks import Mark

DIMMED = (150, 150, 150)
"""The colour of the marks an answer did not name, once it named some."""


def mark_colour(number: int) -> tuple[int, int, int]:
    """Mark N's colour: one per number, the same in every drawing."""
    return PALETTE[(number - 1) % len(PALETTE)]


def draw_marks(
    image: Image.Image,
    marks: Sequence[Mark],
    *,
    image_index: int = 0,
    scale: float = 1.0,
    named: Collection[int] = (),
) -> Image.Image:
    """A copy of ``image`` with the marks of image ``image_index`` drawn, each
    with its number on a filled tag (inside the box's top-left corner, beside
    a point), so a model can read it.

    Args:
        image: The image, or a thumbnail of it; it is not modified.
        marks: In pixels of the image as given.
        scale: ``image``'s width / the width of the image the marks are on.
        named: Numbers an answer named: those are drawn thicker, the others
            grey (nothing is dimmed when it is empty).
    """
    canvas = image.copy() if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    shown = [mark for mark in marks if mark.image == image_index]
    if not shown or canvas.width < 1 or canvas.height < 1:
        return canvas
    side = max(canvas.size)
    line = max(2, round(side / 150))
    # Numbers larger than grounding's labels: the model must read them.
    font = _font(max(12, round(side / 28)))
    draw = ImageDraw.Draw(canvas)
    tags: list[tuple[int, int, str, tuple[int, int, int], bool]] = []
    # Named marks last, so that they lie on top.
    for mark in sorted(shown, key=lambda mark: mark.number in named):
        stands_out = not named or mark.number in named
        colour = mark_colour(mark.number) if stands_out else DIMMED
        width = line * 2 if named and stands_out else line
        if mark.kind == "box":
            x1, y1, x2, y2 = mark.coordinates
            left, top = _pixel(x1 * scale, canvas.width), _pixel(y1 * scale, canvas.height)
            right = max(_pixel(x2 * scale, canvas.width) - 1, left)
            bottom = max(_pixel(y2 * scale, canvas.height) - 1, top)
            draw.rectangle((left, top, right, bottom), outline=colour, width=width)
            tags.append((left, top, str(mark.number), colour, False))
        else:
            x = _pixel(mark.coordinates[0] * scale, canvas.width)
            y = _pixel(mark.coordinates[1] * scale, canvas.height)
            radius = max(3, round(side / 100)) + (width - line)
            ring = max(1, round(line * 0.75))
            draw.ellipse(
                (x - radius, y - radius, x + radius, y + radius),
                fill=colour,
                outline=RING,
                width=ring,
            )
            tags.append((x + radius + ring, y - radius, str(mark.number), colour, False))
    for x, y, text, colour, above in tags:
        _tag(draw, canvas.size, (x, y), text, colour, font, above)
    return canvas
