"""Boxes and points in a vision answer, found while it streams (kernel thread).

The watch knows the cell's own images (their sizes as the user has them),
learns from the runtime how the model's processor resized them
(:class:`~mlx_magic.vocabulary.values.ImagesPrepared`) and the model's family,
and is fed the answer so far at every display flush. It says when a box or
point has completed, so the previews are redrawn only then.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from mlx_magic.grounding import Grounding, GroundingTracker, ImageGeometry, grounding_family
from mlx_magic.grounding.coordinates import estimated_processed_size
from mlx_magic.grounding.values import Box
from mlx_magic.images import LoadedImage
from mlx_magic.vocabulary.values import GenerationRequest, ImagesPrepared

#: Least time between two drawings of the previews while an answer streams.
REDRAW_S = 0.5


class GroundingWatch:
    """Finds the coordinates in one cell's answer, mapped to its images' pixels."""

    def __init__(
        self, images: Sequence[LoadedImage], request: GenerationRequest, *, detect: bool = True
    ):
        self.images = tuple(images)
        self.detect = detect
        self.model_name = request.model.name
        # What the model was sent (shrunk to --max-pixels): a server's resize
        # starts from these.
        own = request.images[len(request.images) - len(self.images) :]
        self.sent_sizes = tuple(getattr(image, "size", None) for image in own)
        self.model_type: Optional[str] = None
        self.processed_sizes: tuple = (None,) * len(self.images)
        self.vision_tokens: tuple = (None,) * len(self.images)
        self._tracker: Optional[GroundingTracker] = None
        self._changed = False
        self._drawn_at = -REDRAW_S

    def prepared(self, event: ImagesPrepared) -> None:
        """What the processor did; the cell's images are the request's last ones."""
        own = len(self.images)
        if own and len(event.processed_sizes) >= own:
            self.processed_sizes = tuple(event.processed_sizes[-own:])
            self.vision_tokens = tuple(event.vision_tokens[-own:])
        self.model_type = event.model_type or None
        self._tracker = None  # rebuilt with what is now known

    def feed(self, answer_so_far: str) -> Optional[Grounding]:
        """The grounding to draw, when an item has completed since the last drawing.

        Drawings are at least :data:`REDRAW_S` apart: each one resends the
        previews, so twenty boxes in a second must not mean twenty of them
        (the answer's end draws whatever is left).
        """
        if not self.images or not self.detect:
            return None
        if self._tracker is None:
            self._tracker = GroundingTracker(
                grounding_family(self.model_type, self.model_name), self.geometries()
            )
        self._changed = self._tracker.feed(answer_so_far) or self._changed
        now = time.monotonic()
        if not self._changed or now - self._drawn_at < REDRAW_S:
            return None
        self._changed, self._drawn_at = False, now
        return self._tracker.grounding

    @property
    def grounding(self) -> Grounding:
        return self._tracker.grounding if self._tracker is not None else Grounding()

    def geometries(self) -> list[ImageGeometry]:
        family = grounding_family(self.model_type, self.model_name)
        geometries = []
        for index, loaded in enumerate(self.images):
            processed = self.processed_sizes[index]
            sent = self.sent_sizes[index] if index < len(self.sent_sizes) else None
            if processed is None and family == "qwen2_5_vl" and sent:
                # A server does not say how it resized: Qwen2.5-VL's default
                # processor, applied to what it was sent.
                processed = estimated_processed_size(sent)
            geometries.append(
                ImageGeometry(
                    size=loaded.image.size,
                    processed_size=processed,
                    vision_tokens=self.vision_tokens[index],
                )
            )
        return geometries

    def with_images(self, grounding: Grounding) -> Grounding:
        """The same items, each able to ``crop()`` the image it belongs to."""
        import dataclasses

        def attach(item: Box) -> Box:
            if 0 <= item.image < len(self.images) and hasattr(item, "source_image"):
                return dataclasses.replace(item, source_image=self.images[item.image].image)
            return item

        return Grounding(
            boxes=tuple(attach(box) for box in grounding.boxes),
            points=tuple(grounding.points),
        )
