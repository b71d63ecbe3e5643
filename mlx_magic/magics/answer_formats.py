"""What ``--format code`` and ``--format json`` take from an answer."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from mlx_magic.grounding import Box, Point

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL)


def first_code_block(answer: str) -> str:
    """The first fenced code block of ``answer``, or the whole answer."""
    match = _FENCE.search(answer)
    return (match.group(2) if match else answer).strip("\n")


def parse_json_answer(answer: str) -> object:
    """The JSON value in ``answer`` (a fenced ```json block is unwrapped).

    Raises:
        ValueError: the answer is not valid JSON (one line, with the position).
    """
    text = answer.strip()
    if text.startswith("```"):
        text = first_code_block(text).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the answer is not valid JSON ({error.msg} at line {error.lineno} "
            f"column {error.colno})"
        ) from error


def with_pixel_coordinates(data: object, boxes: Sequence[Box], points: Sequence[Point]) -> object:
    """``--format json`` of a grounded answer: the model's JSON, each object
    with a ``bbox_2d`` (``point_2d``) also given ``bbox_pixels``
    (``point_pixels``), its place in pixels of the image as given; those
    objects are the boxes (points) found, in the same order.

    An answer that is not JSON but holds boxes (Qwen2-VL's tags, PaliGemma's
    ``<loc>`` tokens, Molmo's points) becomes ``{"boxes": [...], "points": [...]}``.
    """
    if data is None:
        return {
            "boxes": [box.as_dict() for box in boxes],
            "points": [point.as_dict() for point in points],
        }
    # Boxes under "bbox_2d", points under "point_2d": visit reads each as its key says.
    remaining: dict[str, list[Any]] = {"bbox_2d": list(boxes), "point_2d": list(points)}

    def visit(value: object) -> None:
        if isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for key, name in (("bbox_2d", "bbox_pixels"), ("point_2d", "point_pixels")):
                if key in value and remaining[key]:
                    item = remaining[key].pop(0)
                    value[name] = (
                        [round(item.x1, 1), round(item.y1, 1), round(item.x2, 1), round(item.y2, 1)]
                        if key == "bbox_2d"
                        else [round(item.x, 1), round(item.y, 1)]
                    )
            for item in value.values():
                if isinstance(item, (list, dict)):
                    visit(item)

    visit(data)
    return data
