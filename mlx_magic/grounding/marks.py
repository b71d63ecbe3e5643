"""Marks: numbered boxes and points on a cell's images, that a prompt and an
answer can name ("what is in mark 2?", "mark 3 is a cup").

The user draws them on a preview (:mod:`mlx_magic.display.marking`), or they
are the boxes of a vision answer (:func:`marks_from_boxes`). Either way a mark
is in pixels of the image as the cell gave it, numbered from 1 in the order
drawn. ``--region @N`` cuts mark N out; ``--marks`` draws the marks, numbered,
on the image sent (Set-of-Marks prompting), and :func:`find_refs` links the
numbers in the answer back to their marks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from mlx_magic.grounding.values import Box

KINDS = ("box", "point")


@dataclass(frozen=True)
class Mark:
    """One numbered mark on image ``image`` (0-based) of a cell.

    ``coordinates`` are ``(x1, y1, x2, y2)`` for a box (``x1 < x2``,
    ``y1 < y2``) and ``(x, y)`` for a point, in pixels of the image as given.
    """

    number: int
    kind: str
    coordinates: tuple[float, ...]
    label: str = ""
    image: int = 0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The box's ``(x1, y1, x2, y2)``; a point is a box of no size."""
        if self.kind == "box":
            x1, y1, x2, y2 = self.coordinates
            return x1, y1, x2, y2
        x, y = self.coordinates
        return x, y, x, y

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, coordinates rounded to 0.1 pixel: the widget's value holds these."""
        return {
            "number": self.number,
            "kind": self.kind,
            "coordinates": [round(value, 1) for value in self.coordinates],
            "label": self.label,
            "image": self.image,
        }

    def __str__(self) -> str:
        where = ", ".join(f"{value:.0f}" for value in self.coordinates)
        label = f" {self.label!r}" if self.label else ""
        return f"mark {self.number}: {self.kind}{label} ({where}) on image {self.image + 1}"


class Marks(tuple):
    """Numbered :class:`Mark` values (a tuple), shown one line each."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("\n".join(str(mark) for mark in self) or "(no marks)")


@dataclass(frozen=True)
class MarkRef:
    """A place in an answer that names a mark: ``text`` is what was written
    ("mark 3", "[3]"), ``answer[start:end]``."""

    number: int
    mark: Mark
    text: str
    start: int
    end: int


def marks_from_value(value: Iterable[Any]) -> tuple[Mark, ...]:
    """Marks from the widget's synced list (dicts as :meth:`Mark.as_dict` writes,
    ``number`` ignored): numbered 1, 2, ... in order. Entries that are not a
    well-formed box or point (a frontend may send anything) are left out."""
    marks: list[Mark] = []
    for entry in value:
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            continue
        try:
            coordinates = tuple(float(v) for v in entry.get("coordinates", ()))
            image = int(entry.get("image", 0))
        except (TypeError, ValueError):
            continue
        size = 4 if entry["kind"] == "box" else 2
        if len(coordinates) != size or not all(math.isfinite(v) for v in coordinates):
            continue
        if size == 4:
            x1, y1, x2, y2 = coordinates
            coordinates = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
            if coordinates[2] <= coordinates[0] or coordinates[3] <= coordinates[1]:
                continue
        label = str(entry.get("label") or "")
        marks.append(Mark(len(marks) + 1, entry["kind"], coordinates, label, max(0, image)))
    return Marks(marks)


def marks_from_boxes(boxes: Sequence[Box]) -> tuple[Mark, ...]:
    """A vision answer's boxes as marks, numbered in the answer's order."""
    return Marks(
        Mark(number, "box", (box.x1, box.y1, box.x2, box.y2), box.label, box.image)
        for number, box in enumerate(boxes, 1)
    )


_MARK_REFERENCE = re.compile(r"^@(\d+)$")


def mark_number(text: str) -> Optional[int]:
    """``"@3"`` -> 3; anything else -> ``None``."""
    found = _MARK_REFERENCE.match(text.strip())
    return int(found.group(1)) if found else None


# "mark 3", "Marks 2 and 4", "region #1", "box 2, 3": a word, then numbers.
_NAMED = re.compile(
    r"\b(?:marks?|regions?|box(?:es)?|objects?)\s*#?\s*(\d+(?:\s*(?:,|and|or|&)\s*#?\s*\d+)*)",
    re.IGNORECASE,
)
# "[3]" and "#3": the number alone, as a Set-of-Marks answer often writes it.
_BARE = re.compile(r"\[(\d+)\]|(?<![\w#])#(\d+)\b")
_NUMBER = re.compile(r"\d+")


def find_refs(answer: str, marks: Sequence[Mark]) -> tuple[MarkRef, ...]:
    """Where ``answer`` names one of ``marks``, in the order written.

    Numbers outside ``1..len(marks)`` are not references (an answer may
    count things too: "3 cups"), nor is a bare number without a word or
    brackets.
    """
    by_number = {mark.number: mark for mark in marks}
    found: dict[int, MarkRef] = {}  # by start: one reference per place
    for match in _NAMED.finditer(answer):
        for index, number in enumerate(_NUMBER.finditer(match.group(1))):
            value = int(number.group())
            start = match.start(1) + number.start()
            end = start + len(number.group())
            if value in by_number:
                # "marks 2 and 4": the first is named with its word, the rest by number.
                begin = match.start() if index == 0 else start
                found[start] = MarkRef(value, by_number[value], answer[begin:end], begin, end)
    for match in _BARE.finditer(answer):
        group = 1 if match.group(1) is not None else 2
        value = int(match.group(group))
        if value in by_number and match.start(group) not in found:
            found[match.start(group)] = MarkRef(  # keyed by the number, as above
                value, by_number[value], match.group(), match.start(), match.end()
            )
    return tuple(found[start] for start in sorted(found))
