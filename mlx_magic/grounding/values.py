"""The values grounding produces: boxes and points in the pixels of an image as
sent, and the geometry needed to get there.

Every item belongs to one image of the cell (``image``, 0-based). No answer
format in use today names the image it points into, so the detector puts
every item on image 0; the field is there for formats that will.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from PIL import Image

from mlx_magic.grounding.regions import crop_box

Images = Union[Image.Image, Sequence[Image.Image]]
"""One image, or the cell's images in order (as sent to the model)."""


@dataclass(frozen=True)
class ImageGeometry:
    """How one image was seen by the model's processor."""

    size: tuple[int, int]
    """(width, height) of the image as sent (PIL ``.size``)."""
    processed_size: Optional[tuple[int, int]] = None
    """(width, height) after the processor's resize, when known; Qwen2.5-VL
    answers in these pixels."""
    vision_tokens: Optional[int] = None
    """How many vision tokens the image became (filled by the engine; carried, not used here)."""


@dataclass(frozen=True)
class Box:
    """A labelled rectangle in the pixels of the image as sent.

    ``x1 <= x2`` and ``y1 <= y2``, both inside ``(0, 0)``–``ImageGeometry.size``.
    ``format`` names the convention its numbers were read in: ``"qwen2_vl"``
    (0–1000), ``"qwen2_5_vl"`` (pixels of the processed image), ``"qwen3_vl"``
    (0–1000), ``"paligemma"`` (0–1023 location tokens) or ``"molmo"`` (percent).
    """

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    image: int = 0
    format: str = ""
    source_image: Optional[Image.Image] = field(default=None, compare=False, repr=False)
    """The image this box lies on, when the code that made it attached one;
    lets :meth:`crop` work without arguments."""

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_dict(self) -> dict[str, Any]:
        """``{"label", "x1", "y1", "x2", "y2", "image", "format"}``: JSON-safe,
        coordinates rounded to 0.1 pixel."""
        return {
            "label": self.label,
            "x1": round(self.x1, 1),
            "y1": round(self.y1, 1),
            "x2": round(self.x2, 1),
            "y2": round(self.y2, 1),
            "image": self.image,
            "format": self.format,
        }

    def crop(self, images: Optional[Images] = None) -> Image.Image:
        """The part of its image inside this box, e.g. to ask a question about it.

        Args:
            images: The cell's images as sent (``images[self.image]`` is cropped),
                or one image. Without it, the image attached as ``source_image``.

        Returns:
            A new image, with ``mlx_magic_region = (parent, (x1, y1, x2, y2))``
            attached: the whole image and the integer box cut from it, so that a
            preview can show the crop in context. (Pillow drops the attribute
            on ``copy()`` and conversions.)

        Raises:
            ValueError: No image to crop, or ``self.image`` is not among ``images``.
        """
        if images is None:
            if self.source_image is None:
                raise ValueError("this box has no image: pass the images, e.g. box.crop(images)")
            parent = self.source_image
        elif isinstance(images, Image.Image):
            parent = images
        else:
            if not 0 <= self.image < len(images):
                raise ValueError(
                    f"this box is on image {self.image}, but {len(images)} image"
                    f"{'' if len(images) == 1 else 's'} were given"
                )
            parent = images[self.image]
        return crop_box(parent, (self.x1, self.y1, self.x2, self.y2))


@dataclass(frozen=True)
class Point:
    """A labelled point in the pixels of the image as sent (inside the image)."""

    label: str
    x: float
    y: float
    image: int = 0
    format: str = ""

    def as_dict(self) -> dict[str, Any]:
        """``{"label", "x", "y", "image", "format"}``: JSON-safe, rounded to 0.1 pixel."""
        return {
            "label": self.label,
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "image": self.image,
            "format": self.format,
        }


@dataclass(frozen=True)
class Grounding:
    """Every box and point found in one answer, in the order they appear."""

    boxes: tuple[Box, ...] = ()
    points: tuple[Point, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.boxes or self.points)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        """``{"boxes": [...], "points": [...]}`` of :meth:`Box.as_dict` / :meth:`Point.as_dict`."""
        return {
            "boxes": [box.as_dict() for box in self.boxes],
            "points": [point.as_dict() for point in self.points],
        }

    def on_image(self, index: int) -> Grounding:
        """Only the items of image ``index``."""
        return Grounding(
            tuple(box for box in self.boxes if box.image == index),
            tuple(point for point in self.points if point.image == index),
        )

    def labels(self) -> tuple[str, ...]:
        """Each label once, in order of first appearance (boxes first, then points)."""
        seen: dict[str, None] = {}
        for box in self.boxes:
            seen.setdefault(box.label, None)
        for point in self.points:
            seen.setdefault(point.label, None)
        return tuple(seen)
