"""Marks drawn numbered on an image: what ``--marks`` sends (Set-of-Marks) and
what previews show, the marks an answer named standing out. Drawn in the
grounding's style (:mod:`.drawing`: supervision's annotators)."""

from __future__ import annotations

from typing import Collection, Sequence

from PIL import Image

from mlx_magic.grounding.drawing import (
    DIMMED,
    GREY,
    PALETTE,
    Shape,
    annotate,
    box_pixels,
    point_pixels,
)
from mlx_magic.grounding.marks import Mark

__all__ = ["DIMMED", "draw_marks", "mark_colour"]


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
    shapes = []
    # Named marks last, so that they lie on top.
    for mark in sorted(marks, key=lambda mark: mark.number in named):
        if mark.image != image_index:
            continue
        stands_out = not named or mark.number in named
        point = mark.kind != "box"
        shapes.append(
            Shape(
                point_pixels(mark.box[:2], scale, image.size)
                if point
                else box_pixels(mark.box, scale, image.size),
                (mark.number - 1) % len(PALETTE) if stands_out else GREY,
                str(mark.number),
                point=point,
                thick=bool(named) and stands_out,
                inside=True,
            )
        )
    # Numbers larger than grounding's labels: the model must read them.
    return annotate(image, shapes, font_scale=28)
