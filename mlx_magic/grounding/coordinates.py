"""From the numbers in an answer to pixels of the image as sent.

Each syntax has its own scale; the Qwen syntaxes (box tags and ``bbox_2d``
JSON) take theirs from the family:

* ``qwen2_vl`` and ``qwen3_vl``: 0–1000 of the image's width and height;
* ``qwen2_5_vl``: pixels of the image as the processor resized it, mapped by
  the ratio sent size / processed size (the processed size is
  ``ImageGeometry.processed_size``, or :func:`estimated_processed_size` when
  the engine could not tell, e.g. a remote server);
* unknown family: pixels (of ``processed_size`` if known, else of the image
  as sent) when any number exceeds 1000, since no 0–1000 value can; otherwise
  0–1000, the convention of the current Qwen models (Qwen3-VL, Qwen3.5). A
  small image answered in pixels by an unrecognised model is the one case this
  misreads; naming the model (see :mod:`~mlx_magic.grounding.families`)
  avoids it.

PaliGemma location tokens are always value / 1024 of the size; Molmo points
always percent.

A number may overshoot the scale by :data:`TOLERANCE` of it (models do, by
a little) and is then clamped to the image; NaN, infinities or anything
further out drop the whole item, and so does a box with no area left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from mlx_magic.grounding.values import ImageGeometry

TOLERANCE = 0.05
"""How far past either end of its scale a number may be and still be read."""

QWEN2_5_RESIZE = (28, 56 * 56, 16384 * 28 * 28)
"""(factor, min_pixels, max_pixels) of Qwen2.5-VL's shipped preprocessor
config: patch 14 × merge 2, 3136 to 12,845,056 pixels."""

MILLE = 1000.0


@dataclass(frozen=True)
class Reading:
    """How to read one item's numbers."""

    format: str
    """The convention, as reported in ``Box.format``/``Point.format``."""
    extent: tuple[float, float]
    """The numbers that mean the right and the bottom edge of the image."""


def reading_for(
    syntax: str, family: Optional[str], values: Sequence[float], geometry: ImageGeometry
) -> Reading:
    """The reading of an item found in ``syntax`` ("qwen_tags", "qwen_json",
    "paligemma" or "molmo") in an answer of ``family``."""
    if syntax == "paligemma":
        return Reading("paligemma", (1024.0, 1024.0))
    if syntax == "molmo":
        return Reading("molmo", (100.0, 100.0))
    if family in ("qwen2_vl", "qwen3_vl"):
        return Reading(family, (MILLE, MILLE))
    if family == "qwen2_5_vl":
        width, height = geometry.processed_size or estimated_processed_size(geometry.size)
        return Reading("qwen2_5_vl", (float(width), float(height)))
    if any(value > MILLE for value in values if math.isfinite(value)):
        width, height = geometry.processed_size or geometry.size
        return Reading("qwen2_5_vl", (float(width), float(height)))
    return Reading("qwen2_vl" if syntax == "qwen_tags" else "qwen3_vl", (MILLE, MILLE))


def box_pixels(
    values: Sequence[float], reading: Reading, size: tuple[int, int]
) -> Optional[tuple[float, float, float, float]]:
    """``(x1, y1, x2, y2)`` in pixels of ``size`` for numbers ``x1, y1, x2, y2``
    read as ``reading``: ordered, clamped, or ``None`` when they make no box."""
    if len(values) != 4:
        return None
    x1, x2 = _axis((values[0], values[2]), reading.extent[0], size[0])
    y1, y2 = _axis((values[1], values[3]), reading.extent[1], size[1])
    if x1 is None or x2 is None or y1 is None or y2 is None:
        return None
    left, right = min(x1, x2), max(x1, x2)
    top, bottom = min(y1, y2), max(y1, y2)
    if right - left <= 0 or bottom - top <= 0:
        return None
    # Hundredths of a pixel: enough, and ``Box(x1=30.08, ...)`` reads better than float noise.
    return round(left, 2), round(top, 2), round(right, 2), round(bottom, 2)


def point_pixels(
    values: Sequence[float], reading: Reading, size: tuple[int, int]
) -> Optional[tuple[float, float]]:
    """``(x, y)`` in pixels of ``size`` for numbers ``x, y`` read as
    ``reading``, clamped, or ``None`` when they make no point."""
    if len(values) != 2:
        return None
    (x,) = _axis((values[0],), reading.extent[0], size[0])
    (y,) = _axis((values[1],), reading.extent[1], size[1])
    if x is None or y is None:
        return None
    return round(x, 2), round(y, 2)


def estimated_processed_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) Qwen2.5-VL's default processor resizes an image of
    ``size`` to: each side rounded to a multiple of 28, the area kept within
    :data:`QWEN2_5_RESIZE`, the aspect ratio kept as well as that allows.

    Only a fallback: the engine knows the real size (``processed_size``), a
    processor configured with other limits gives another.
    """
    width, height = size
    if width < 1 or height < 1:
        return size
    factor, min_pixels, max_pixels = QWEN2_5_RESIZE
    new_height = max(factor, round(height / factor) * factor)
    new_width = max(factor, round(width / factor) * factor)
    if new_height * new_width > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_height = max(factor, math.floor(height / beta / factor) * factor)
        new_width = max(factor, math.floor(width / beta / factor) * factor)
    elif new_height * new_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_height = math.ceil(height * beta / factor) * factor
        new_width = math.ceil(width * beta / factor) * factor
    return new_width, new_height


def _axis(values: Sequence[float], extent: float, pixels: int) -> tuple[Optional[float], ...]:
    """Numbers on one axis, scaled from ``0..extent`` to ``0..pixels``."""
    if extent <= 0 or pixels <= 0:
        return tuple(None for _ in values)
    slack = TOLERANCE * extent
    scaled: list[Optional[float]] = []
    for value in values:
        if not math.isfinite(value) or value < -slack or value > extent + slack:
            scaled.append(None)
        else:
            scaled.append(min(max(value / extent * pixels, 0.0), float(pixels)))
    return tuple(scaled)
