"""Boxes and points drawn on an image: outlines, label tags, dots, drawn by
Roboflow's supervision annotators (the field's drawing library), in one style
for grounding (:func:`draw_grounding`) and for numbered marks
(:mod:`.mark_drawing`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from PIL import Image, ImageChops

from mlx_magic.grounding.values import Grounding

if TYPE_CHECKING:
    import supervision as sv

Colour = tuple[int, int, int]

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
"""One colour per label, in order of first appearance; they repeat after twelve.
The drawing board's JavaScript (``display/marking.js``) holds the same list."""

DIMMED: Colour = (150, 150, 150)
"""The colour of the marks an answer did not name, once it named some."""

RING: Colour = (255, 255, 255)
"""The ring around a point: it shows the dot on any colour."""

GREY = len(PALETTE)
"""The colour index of :data:`DIMMED` (after the palette's own colours)."""


@dataclass(frozen=True)
class Shape:
    """One box or point to draw, in pixels of the canvas (a point: ``x, y, x, y``).

    ``colour`` indexes :data:`PALETTE` (:data:`GREY` for :data:`DIMMED`);
    ``thick`` doubles the line; ``inside``: the tag goes inside the box's
    top-left corner (a mark's number) rather than above it (a label).
    """

    xyxy: tuple[int, int, int, int]
    colour: int
    text: str = ""
    point: bool = False
    thick: bool = False
    inside: bool = False


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
    colours = {label: i % len(PALETTE) for i, label in enumerate(grounding.labels())}
    shown = grounding.on_image(image_index)
    size = image.size
    shapes = [
        Shape(box_pixels((box.x1, box.y1, box.x2, box.y2), scale, size), colours[box.label], box.label)
        for box in shown.boxes
    ] + [
        Shape(point_pixels((point.x, point.y), scale, size), colours[point.label], point.label, True)
        for point in shown.points
    ]  # fmt: skip
    return annotate(image, shapes, font_scale=40)


def annotate(image: Image.Image, shapes: Sequence[Shape], *, font_scale: int) -> Image.Image:
    """A copy of ``image`` with ``shapes`` drawn by supervision's annotators.

    Line widths, dot and font sizes follow the image's longest side (a
    thumbnail and the whole image look alike): lines ``side / 150``, the font
    ``side / font_scale``. Tags are drawn last, so no outline crosses a label.
    """
    if image.mode == "RGBA":
        # The annotators draw on RGB: the drawn pixels become opaque, the rest keep their alpha.
        plain = image.convert("RGB")
        drawn = annotate(plain, shapes, font_scale=font_scale)
        changed = ImageChops.difference(drawn, plain).convert("L").point(lambda v: 255 if v else 0)
        drawn.putalpha(ImageChops.lighter(image.getchannel("A"), changed))
        return drawn
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if not shapes or image.width < 1 or image.height < 1:
        return rgb.copy() if rgb is image else rgb

    import supervision as sv

    side = max(rgb.size)
    line = max(2, round(side / 150))
    radius, ring = max(3, round(side / 100)), max(1, round(line * 0.75))
    # Outlines and dots on one OpenCV (BGR) copy of the pixels, the tags (Pillow
    # fonts) on the one converted back: two conversions, whatever the number of shapes.
    scene = sv.pillow_to_cv2(rgb)
    for thick in (False, True):
        width = line * 2 if thick else line
        boxes = [shape for shape in shapes if not shape.point and shape.thick == thick]
        if boxes:
            # supervision centres a line on the box's edge: inset by half a line, it lies inside.
            half = width // 2
            inset = [(x1 + half, y1 + half, max(x2 - half, x1 + half), max(y2 - half, y1 + half))
                     for x1, y1, x2, y2 in (shape.xyxy for shape in boxes)]  # fmt: skip
            box_annotator(width).annotate(scene, _detections(inset, boxes))
        points = [shape for shape in shapes if shape.point and shape.thick == thick]
        if points:
            dots = dot_annotator(radius + width - line, ring)
            dots.annotate(scene, _detections([shape.xyxy for shape in points], points))
    canvas = sv.cv2_to_pillow(scene)

    size = max(12, round(side / font_scale))
    for below in (False, True):
        # A label above its box; a number inside its box's corner; a point's label beside it.
        group = [s for s in shapes if s.text and (s.inside or s.point) == below]
        if group:
            anchors = [
                (x1 + radius + ring, y1 - radius) if shape.point else (x1, y1)
                for shape in group
                for x1, y1, _, _ in (shape.xyxy,)
            ]
            label_annotator(size, below=below).annotate(
                canvas,
                _detections([(x, y, x, y) for x, y in anchors], group),
                labels=[shape.text for shape in group],
            )
    return canvas


def load_annotators() -> None:
    """Import supervision now: its first import takes about a second (SciPy),
    which a vision cell pays before its answer streams, not at its first box."""
    import supervision  # noqa: F401


def box_pixels(
    box: tuple[float, float, float, float], scale: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A box's outermost pixels on a canvas of ``size``: ``x2``, ``y2`` included."""
    width, height = size
    left, top = _pixel(box[0] * scale, width), _pixel(box[1] * scale, height)
    right = max(_pixel(box[2] * scale, width) - 1, left)
    bottom = max(_pixel(box[3] * scale, height) - 1, top)
    return left, top, right, bottom


def point_pixels(
    point: tuple[float, float], scale: float, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    x, y = _pixel(point[0] * scale, size[0]), _pixel(point[1] * scale, size[1])
    return x, y, x, y


def ink(colour: Colour) -> Colour:
    """Black on light tags, white on dark ones."""
    red, green, blue = colour
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def _pixel(value: float, limit: int) -> int:
    return min(max(round(value), 0), limit)


def _detections(xyxy: Sequence[tuple[int, ...]], shapes: Sequence[Shape]) -> sv.Detections:
    import numpy as np
    import supervision as sv

    return sv.Detections(
        xyxy=np.array(xyxy, dtype=np.float32).reshape(-1, 4),
        class_id=np.array([shape.colour for shape in shapes], dtype=int),
    )


@lru_cache(maxsize=1)
def palettes(dimmed: bool = True) -> tuple[sv.ColorPalette, sv.ColorPalette]:
    """The fills (:data:`PALETTE`, then :data:`DIMMED` unless ``dimmed`` is
    false) and each one's ink, as supervision palettes: any other annotator
    (masks, say) takes them, so that everything drawn shares one style."""
    import supervision as sv

    fills = (*PALETTE, DIMMED) if dimmed else PALETTE
    return (
        sv.ColorPalette([sv.Color(*colour) for colour in fills]),
        sv.ColorPalette([sv.Color(*ink(colour)) for colour in fills]),
    )


@lru_cache(maxsize=16)
def box_annotator(thickness: int) -> sv.BoxAnnotator:
    import supervision as sv

    return sv.BoxAnnotator(color=palettes()[0], thickness=thickness)


@lru_cache(maxsize=16)
def dot_annotator(radius: int, ring: int) -> sv.DotAnnotator:
    import supervision as sv

    return sv.DotAnnotator(
        color=palettes()[0], radius=radius, outline_thickness=ring, outline_color=sv.Color(*RING)
    )


@lru_cache(maxsize=16)
def label_annotator(font_size: int, *, below: bool) -> sv.RichLabelAnnotator:
    """Tags with Pillow's bundled scalable font (any script, unlike OpenCV's
    Hershey fonts), their top-left (``below``) or bottom-left at the anchor;
    ``smart_position`` keeps them inside the image and spreads overlapping ones."""
    import supervision as sv

    fills, inks = palettes()
    return sv.RichLabelAnnotator(
        color=fills,
        text_color=inks,
        font_size=font_size,
        text_padding=max(2, font_size // 6),
        text_position=sv.Position.BOTTOM_LEFT if below else sv.Position.TOP_LEFT,
        smart_position=True,
    )
