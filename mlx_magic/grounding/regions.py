"""Regions of an image: crops that remember where they came from, and a
preview that shows a region in the context of its whole image (drawn by
supervision's annotators, as :mod:`.drawing` draws boxes)."""

from __future__ import annotations

import math
from typing import Optional

from PIL import Image

REGION_ATTRIBUTE = "mlx_magic_region"
"""Attribute set on every crop made here: ``(parent_image, (x1, y1, x2, y2))``."""

REGION_OUTLINE = (255, 214, 0)
"""The outline of the region in :func:`region_context`: bright yellow shows on most photos."""

OUTSIDE_DIMMING = 0.55
"""How much of the image outside the region is blended to black in :func:`region_context`."""

IntBox = tuple[int, int, int, int]


def crop_region(image: Image.Image, x1: float, y1: float, x2: float, y2: float) -> Image.Image:
    """The region ``(x1, y1)``–``(x2, y2)`` of ``image``, for ``--region``.

    Coordinates are pixels of ``image`` (rounded to whole pixels); the region
    must lie inside the image and be at least one pixel wide and high.

    Returns:
        The crop, with ``mlx_magic_region = (image, (x1, y1, x2, y2))`` attached.

    Raises:
        ValueError: One line naming the image size, when the region is not a
            non-empty rectangle inside the image.
    """
    width, height = image.size
    values = (x1, y1, x2, y2)
    shown = ", ".join(_number(value) for value in values)
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise ValueError(f"region ({shown}) must be four numbers: x1, y1, x2, y2") from None
    if not all(math.isfinite(value) for value in numbers):
        raise ValueError(f"region ({shown}) must be four finite numbers: x1, y1, x2, y2")
    left, top, right, bottom = (round(value) for value in numbers)
    if right <= left or bottom <= top:
        raise ValueError(
            f"region ({shown}) is empty: it needs x1 < x2 and y1 < y2 "
            f"(pixels of the {width}×{height} image)"
        )
    if left < 0 or top < 0 or right > width or bottom > height:
        raise ValueError(
            f"region ({shown}) is outside the {width}×{height} image: "
            f"x must be within 0–{width} and y within 0–{height}"
        )
    return _cut(image, (left, top, right, bottom))


def crop_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The part of ``image`` inside a detected box, clamped to the image and at
    least one pixel each way (a detection never fails to crop)."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ValueError(f"cannot crop an empty {width}×{height} image")
    x1, y1, x2, y2 = (value if math.isfinite(value) else 0.0 for value in box)
    left = min(max(round(min(x1, x2)), 0), width - 1)
    top = min(max(round(min(y1, y2)), 0), height - 1)
    right = min(max(round(max(x1, x2)), left + 1), width)
    bottom = min(max(round(max(y1, y2)), top + 1), height)
    return _cut(image, (left, top, right, bottom))


def region_of(image: Image.Image) -> Optional[tuple[Image.Image, IntBox]]:
    """``(parent, box)`` when ``image`` is a crop made here, else ``None``."""
    region = getattr(image, REGION_ATTRIBUTE, None)
    if (
        isinstance(region, tuple)
        and len(region) == 2
        and isinstance(region[0], Image.Image)
        and isinstance(region[1], tuple)
        and len(region[1]) == 4
    ):
        return region[0], region[1]
    return None


def region_context(
    parent: Image.Image, region_box: tuple[float, float, float, float], max_side: int = 256
) -> Image.Image:
    """A thumbnail of ``parent`` with ``region_box`` outlined and the rest dimmed.

    Args:
        parent: The whole image; it is not modified.
        region_box: ``(x1, y1, x2, y2)`` in pixels of ``parent``.
        max_side: Longest side of the result; smaller images keep their size.

    Returns:
        A new RGB image, the same aspect as ``parent``.

    Raises:
        ValueError: ``max_side`` is below 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    small = parent.convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    scale_x = small.width / max(parent.width, 1)
    scale_y = small.height / max(parent.height, 1)
    x1, y1, x2, y2 = (value if math.isfinite(value) else 0.0 for value in region_box)
    left = min(max(round(min(x1, x2) * scale_x), 0), small.width - 1)
    top = min(max(round(min(y1, y2) * scale_y), 0), small.height - 1)
    right = min(max(round(max(x1, x2) * scale_x), left + 1), small.width)
    bottom = min(max(round(max(y1, y2) * scale_y), top + 1), small.height)

    import numpy as np
    import supervision as sv

    # supervision's annotators: the outside dimmed, the region kept, then its outline
    # just outside it (a line is centred on its path: half a line plus a pixel out).
    scene = sv.pillow_to_cv2(small)
    region = sv.Detections(xyxy=np.array([[left, top, right, bottom]], dtype=np.float32))
    sv.BackgroundOverlayAnnotator(sv.Color.BLACK, opacity=OUTSIDE_DIMMING).annotate(scene, region)
    line = max(2, round(max(small.size) / 150))
    half = line // 2
    path = [[left - 1 - half, top - 1 - half, right + half, bottom + half]]
    outline = sv.BoxAnnotator(
        sv.Color(*REGION_OUTLINE), thickness=line, color_lookup=sv.ColorLookup.INDEX
    )
    outline.annotate(scene, sv.Detections(xyxy=np.array(path, dtype=np.float32)))
    return sv.cv2_to_pillow(scene)


def _cut(image: Image.Image, box: IntBox) -> Image.Image:
    piece = image.crop(box)
    # Pillow images take attributes; copies and conversions drop it again,
    # which is right: they are no longer the crop of that region.
    setattr(piece, REGION_ATTRIBUTE, (image, box))
    return piece


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
