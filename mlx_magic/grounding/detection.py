"""Boxes and points in an answer, mapped to the pixels of the image as sent:
all at once (:func:`find_grounding`) or as the answer streams in
(:class:`GroundingTracker`).

Every syntax is recognised whatever the family (each has its own
unmistakable shape); the family only decides how the Qwen syntaxes' numbers
are read (see :mod:`~mlx_magic.grounding.coordinates`). No syntax names the
image it points into, so every item belongs to image 0; with no image at
all, nothing is found (the numbers would mean nothing).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from mlx_magic.grounding.coordinates import box_pixels, point_pixels, reading_for
from mlx_magic.grounding.syntax import Found, Scanner, scanners
from mlx_magic.grounding.values import Box, Grounding, ImageGeometry, Point

Item = Union[Box, Point]


def find_grounding(
    text: str, family: Optional[str], geometries: Sequence[ImageGeometry]
) -> Grounding:
    """Every complete box and point in ``text``.

    Args:
        text: A model's answer (or the part of it written so far).
        family: The coordinate convention, from
            :func:`~mlx_magic.grounding.families.grounding_family`; ``None``
            when unknown: each syntax is then read by its own rule.
        geometries: How each image of the cell was sent, in order.

    Returns:
        The items in the order they appear, in pixels of the image as sent.
        Malformed or nonsensical coordinates are left out, never raised.
    """
    tracker = GroundingTracker(family, geometries)
    tracker.feed(text)
    return tracker.grounding


class GroundingTracker:
    """:func:`find_grounding` for an answer that grows: each :meth:`feed`
    reads only what is new since the last (plus the item being written).

    Feeding a text that does not extend the last one (a new answer) starts
    over.
    """

    def __init__(self, family: Optional[str], geometries: Sequence[ImageGeometry]):
        self.family = family
        self.geometries = tuple(geometries)
        self._scanners: list[Scanner] = []
        self._text = ""
        self._final: list[tuple[int, Item]] = []
        """Completed items with where they start, in the order completed."""
        self._provisional: list[tuple[int, Item]] = []
        self._grounding = Grounding()
        self._start_over()

    def feed(self, text_so_far: str) -> bool:
        """Read the answer so far.

        Args:
            text_so_far: The whole answer so far, not just the new part.

        Returns:
            Whether :attr:`grounding` changed: an item was completed (or, for
            PaliGemma, the label of the item being written grew), or the
            text started over.
        """
        restarted = not text_so_far.startswith(self._text)
        if restarted:
            self._start_over()
        self._text = text_so_far
        completed = False
        provisional: list[tuple[int, Item]] = []
        for scanner in self._scanners:
            done, pending = scanner.scan(text_so_far)
            for found in done:
                item = self._item(found)
                if item is not None:
                    self._final.append((found.start, item))
                    completed = True
            provisional.extend(
                (found.start, item) for found in pending if (item := self._item(found))
            )
        if not (restarted or completed or provisional != self._provisional):
            return False
        self._provisional = provisional
        before = self._grounding
        self._grounding = _grounding(self._final + provisional)
        return self._grounding != before

    @property
    def grounding(self) -> Grounding:
        """Every item found so far, in the order they appear."""
        return self._grounding

    def _start_over(self) -> None:
        self._scanners = scanners()
        self._text = ""
        self._final = []
        self._provisional = []
        self._grounding = Grounding()

    def _item(self, found: Found) -> Optional[Item]:
        """``found`` in pixels of its image, or ``None`` when it makes no item there."""
        if not self.geometries:
            return None
        geometry = self.geometries[0]
        reading = reading_for(found.syntax, self.family, found.values, geometry)
        if found.kind == "box":
            box = box_pixels(found.values, reading, geometry.size)
            return None if box is None else Box(found.label, *box, format=reading.format)
        point = point_pixels(found.values, reading, geometry.size)
        return None if point is None else Point(found.label, *point, format=reading.format)


def _grounding(items: list[tuple[int, Item]]) -> Grounding:
    ordered = [item for _, item in sorted(items, key=lambda pair: pair[0])]
    return Grounding(
        tuple(item for item in ordered if isinstance(item, Box)),
        tuple(item for item in ordered if isinstance(item, Point)),
    )
