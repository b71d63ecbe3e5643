"""Grounding: the boxes and points a vision-language model answers "where"
questions with, found in its answer and drawn on the image.

::

    family = grounding_family(model_type, model_name)      # "qwen2_5_vl", ... or None
    tracker = GroundingTracker(family, [ImageGeometry(image.size, processed_size)])
    for text_so_far in stream:
        if tracker.feed(text_so_far):
            preview = draw_grounding(thumbnail, tracker.grounding, scale=thumbnail.width / image.width)

Coordinates come out in pixels of the image as sent, whatever the model's
convention (0–1000, processed pixels, location tokens, percent): see
:mod:`.families` and :mod:`.coordinates`. Pure Python and Pillow, drawn by
supervision's annotators (:mod:`.drawing`): nothing here imports MLX or IPython.
"""

from mlx_magic.grounding.detection import GroundingTracker, find_grounding
from mlx_magic.grounding.drawing import PALETTE, draw_grounding
from mlx_magic.grounding.families import FAMILIES, grounding_family
from mlx_magic.grounding.regions import REGION_ATTRIBUTE, crop_region, region_context, region_of
from mlx_magic.grounding.values import Box, Grounding, ImageGeometry, Point

__all__ = [
    "FAMILIES",
    "PALETTE",
    "REGION_ATTRIBUTE",
    "Box",
    "Grounding",
    "GroundingTracker",
    "ImageGeometry",
    "Point",
    "crop_region",
    "draw_grounding",
    "find_grounding",
    "grounding_family",
    "region_context",
    "region_of",
]
