"""Finding items in answer text, one syntax at a time, as the text grows.

Each scanner remembers how far it has read and resumes there: at the start
of an item still being written, or just before the end of the text where an
opening token may be cut in half. Only complete items are returned, as
:class:`Found` values whose numbers are still in the answer's own scale
(:mod:`~mlx_magic.grounding.coordinates` maps them to pixels).

An item is complete when the text that closes it arrives:

* Qwen box tags: ``<|box_end|>``;
* ``bbox_2d`` / ``point_2d`` JSON: the ``}`` closing the object holding the key;
* PaliGemma: the fourth ``<locNNNN>`` token (its label may still grow: until a
  ``;``, a newline or another token ends it, the item is *provisional*);
* Molmo: the ``>`` closing the ``<point ...>`` or ``<points ...>`` tag.

Scanners never raise on what a model writes: anything malformed is skipped.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Optional, Protocol

from mlx_magic.grounding.json_objects import NUMBER, JsonScanner, clean_label, number_list


@dataclass(frozen=True)
class Found:
    """One complete item, in the numbers the answer wrote."""

    syntax: str
    """"qwen_tags", "qwen_json", "paligemma" or "molmo"."""
    kind: str
    """"box" (values x1, y1, x2, y2) or "point" (values x, y)."""
    label: str
    values: tuple[float, ...]
    start: int
    """Where the item starts in the text: items are ordered by it."""


Scan = tuple[list[Found], list[Found]]
"""(items completed since the last scan, provisional items)."""


class Scanner(Protocol):
    def scan(self, text: str) -> Scan:
        """Read ``text`` (the whole answer so far, an extension of the text
        of the last call) from where the last call stopped."""
        ...


def scanners() -> list[Scanner]:
    """A fresh scanner for every syntax."""
    return [QwenTagScanner(), QwenJsonScanner(), LocScanner(), PointTagScanner()]


BOX_START, BOX_END = "<|box_start|>", "<|box_end|>"
REF_START, REF_END = "<|object_ref_start|>", "<|object_ref_end|>"
MAX_BOX_TEXT = 80
"""Longest text between the box tags: "(1000,1000),(1000,1000)" is 23 characters."""
MAX_REF_TEXT = 300
SEPARATORS = " \t\r\n,;"
"""What may stand between a reference and its boxes, or between two boxes of one reference."""


class QwenTagScanner:
    """Qwen2-VL's ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``.

    A box takes the label of the reference just before it, or of the box
    just before it (several boxes may follow one reference); only
    :data:`SEPARATORS` may stand between them. A box with neither is
    labelled "".
    """

    def __init__(self) -> None:
        self.pos = 0
        self._previous = (-1, "")  # (start, label) of the last box read

    def scan(self, text: str) -> Scan:
        found: list[Found] = []
        while True:
            start = text.find(BOX_START, self.pos)
            if start < 0:
                self.pos = max(self.pos, len(text) - len(BOX_START) + 1)
                return found, []
            inner = start + len(BOX_START)
            limit = inner + MAX_BOX_TEXT + len(BOX_END)
            token = text.find("<|", inner, limit)
            if token >= 0 and text.startswith(BOX_END, token):
                end = token
            elif (
                token >= 0 and len(text) < token + len(BOX_END) and BOX_END.startswith(text[token:])
            ):
                self.pos = start  # the closing token is arriving
                return found, []
            elif token >= 0:
                self.pos = token  # another token cut this box short
                continue
            elif len(text) < limit:
                self.pos = start  # still being written
                return found, []
            else:
                self.pos = inner
                continue
            label = self._label(text, start)
            self._previous = (start, label)
            self.pos = end + len(BOX_END)
            values = tag_numbers(text[inner:end])
            if values is not None:
                found.append(Found("qwen_tags", "box", label, values, start))

    def _label(self, text: str, start: int) -> str:
        end = start
        while end > max(0, start - 40) and text[end - 1] in SEPARATORS:
            end -= 1
        if text.endswith(REF_END, 0, end):
            ref_end = end - len(REF_END)
            ref = text.rfind(REF_START, max(0, ref_end - MAX_REF_TEXT - len(REF_START)), ref_end)
            return clean_label(text[ref + len(REF_START) : ref_end]) if ref >= 0 else ""
        if text.endswith(BOX_END, 0, end):
            previous = text.rfind(BOX_START, max(0, end - 200), end)
            if previous >= 0 and previous == self._previous[0]:
                return self._previous[1]
        return ""


def tag_numbers(inner: str) -> Optional[tuple[float, ...]]:
    """The four numbers of ``(x1,y1),(x2,y2)`` (brackets and spaces optional), or ``None``."""
    numbers = NUMBER.findall(inner)
    if len(numbers) != 4 or NUMBER.sub("", inner).strip(" \t\r\n()[],"):
        return None
    return tuple(float(number) for number in numbers)


class QwenJsonScanner(JsonScanner):
    """``{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}`` and ``{"point_2d": [x, y], ...}``,
    fenced or not, in a list or alone, with any other keys."""

    def scan(self, text: str) -> Scan:
        found: list[Found] = []
        for start, fields in self.objects(text):
            label = clean_label(fields.get("label", fields.get("text_content", "")))
            box = number_list(fields.get("bbox_2d"), 4)
            if box is not None:
                found.append(Found("qwen_json", "box", label, box, start))
            point = number_list(fields.get("point_2d"), 2)
            if point is not None:
                found.append(Found("qwen_json", "point", label, point, start))
        return found, []


LOCS = re.compile(r"<loc(\d{4})> ?<loc(\d{4})> ?<loc(\d{4})> ?<loc(\d{4})>")
SEGMENTS = re.compile(r"\s*(?:<seg\d{3}>\s*)*")
MAX_LOC_LABEL = 200
LOC_LABEL = re.compile(r"[^;<>\n]{0,%d}" % MAX_LOC_LABEL)
PARTIAL_SEGMENT = re.compile(r"<(?:s(?:e(?:g\d{0,3})?)?)?")
LOC_MARGIN = 4 * len("<loc0000> ")
LAST_LOC = 1023
"""PaliGemma's vocabulary has <loc0000> to <loc1023>: bins of 1/1024 of a side."""


class LocScanner:
    """PaliGemma's ``<locY1><locX1><locY2><locX2> label``, detections separated
    by `` ; ``; segmentation tokens after the locations are skipped."""

    def __init__(self) -> None:
        self.pos = 0

    def scan(self, text: str) -> Scan:
        found: list[Found] = []
        while True:
            match = LOCS.search(text, self.pos)
            if match is None:
                self.pos = max(self.pos, len(text) - LOC_MARGIN)
                return found, []
            y1, x1, y2, x2 = (float(value) for value in match.groups())
            if max(y1, x1, y2, x2) > LAST_LOC:
                self.pos = match.start() + 1  # no such token: not PaliGemma's
                continue
            after = SEGMENTS.match(text, match.end())
            label_start = after.end() if after else match.end()
            label = LOC_LABEL.match(text, label_start)
            label_end = label.end() if label else label_start
            label_text = clean_label(text[label_start:label_end])
            item = Found("paligemma", "box", label_text, (x1, y1, x2, y2), match.start())
            if label_end - label_start < MAX_LOC_LABEL and _label_may_grow(text, label_end):
                self.pos = match.start()  # read it again: the label is still arriving
                return found, [item]
            found.append(item)
            self.pos = label_end


def _label_may_grow(text: str, end: int) -> bool:
    """Whether the text after a PaliGemma label may still become label text."""
    tail = text[end:]
    return not tail or PARTIAL_SEGMENT.fullmatch(tail) is not None


POINT_TAG = re.compile(r"<points?(?=[\s>/])")
ATTRIBUTE = re.compile(r'([A-Za-z_][\w-]*)\s*=\s*"([^"]*)"')
MAX_TAG = 4000
INDEXED = re.compile(r"[xy](\d+)")


class PointTagScanner:
    """Molmo's ``<point x="61.5" y="40.2" alt="cat">cat</point>`` and
    ``<points x1=".." y1=".." x2=".." y2=".." alt="dogs">dogs</points>``
    (percent of the width and height); the label is ``alt``."""

    def __init__(self) -> None:
        self.pos = 0

    def scan(self, text: str) -> Scan:
        found: list[Found] = []
        while True:
            match = POINT_TAG.search(text, self.pos)
            if match is None:
                self.pos = max(self.pos, len(text) - len("<points"))
                return found, []
            limit = min(len(text), match.start() + MAX_TAG)
            close = text.find(">", match.end(), limit)
            broken = text.find("<", match.end(), close if close >= 0 else limit)
            if broken >= 0:
                self.pos = broken
                continue
            if close < 0:
                if limit == len(text):
                    self.pos = match.start()
                    return found, []
                self.pos = match.end()
                continue
            attributes = dict(ATTRIBUTE.findall(text, match.end(), close))
            label = clean_label(html.unescape(attributes.get("alt", "")))
            for values in _tag_points(attributes):
                found.append(Found("molmo", "point", label, values, match.start()))
            self.pos = close + 1


def _tag_points(attributes: dict[str, str]) -> list[tuple[float, float]]:
    """The (x, y) pairs of a point tag: ``x``/``y``, then ``x1``/``y1``, ``x2``/``y2``..."""
    names = [("x", "y")]
    indices = sorted({int(m.group(1)) for name in attributes if (m := INDEXED.fullmatch(name))})
    names += [(f"x{index}", f"y{index}") for index in indices]
    points = []
    for x_name, y_name in names:
        pair = number_list([attributes.get(x_name), attributes.get(y_name)], 2)
        if pair is not None:
            points.append((pair[0], pair[1]))
    return points
