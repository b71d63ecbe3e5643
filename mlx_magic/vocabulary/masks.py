"""What a segmenter (SAM 3, SAM 3.1) is asked and what it finds: typed masks in the pixels of an image.

A :class:`Mask` keeps its pixels run-length encoded as COCO does (the
compressed ``counts`` string of ``pycocotools``, made by supervision), so it
crosses the worker process's pipe, ``-f json`` and a saved notebook's output
metadata as a short string, never as an image; ``mask.mask`` decodes it into a
boolean array at the image's size. Made by
:func:`mlx_magic.engine.segmentation.segment`, drawn by
:mod:`mlx_magic.display.masks_view`; a notebook reads them as ``_mlx.masks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from mlx_magic.vocabulary import defaults
from mlx_magic.vocabulary.values import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

#: Why a server cannot segment (the remote runtime says it).
NEEDS_LOCAL_SEGMENTER = (
    "--segment runs SAM 3 here: it needs a local model (thread or process runtime; "
    "%mlx disconnect goes back to one)"
)


@dataclass(frozen=True)
class BoxPrompt:
    """A box SAM 3 is asked to outline, in pixels of image ``image`` (0-based) as given."""

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    image: int = 0


@dataclass(frozen=True)
class SegmentRequest:
    """What a runtime's segmenter is asked (``Runtime.segment``).

    Attributes:
        model: the segmenter (a SAM 3 or SAM 3.1 folder: ``kind == "segmenter"``).
        images: the images, as given (masks come back at their sizes).
        prompts: text prompts, each a label of its own ("cup", "plate"); every
            image is segmented with each.
        boxes: box prompts: each becomes the mask that best covers it, with its label.
        threshold: the lowest score kept (0 to 1).
        track: ``images`` are a video's frames, in order: each instance on the
            first frame is tracked through them by the segmenter's tracker,
            with a track id (``-v`` with ``--segment``).
        video: a video file for the runtime to read and track through
            (sampled at ``video_fps``, at most ``video_max_frames``).
        tracking: an id (the cell's) to track the video a few frames a call:
            the first call (with the frames or ``video``) detects on the first
            frame and starts the tracker, which waits in the runtime; each
            call with the same id (no frames needed) goes on. Empty: one call
            tracks every frame. A new id, or any other segment call, ends the
            one that waits.
        frames_wanted: with ``tracking``, how many frames this call tracks
            (0: every frame left).
    """

    model: ModelSpec
    images: tuple[Image.Image, ...]
    prompts: tuple[str, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    threshold: float = 0.5
    track: bool = False
    video: Optional[str] = None
    video_fps: float = defaults.VIDEO_FPS
    video_max_frames: int = defaults.VIDEO_MAX_FRAMES
    tracking: str = ""
    frames_wanted: int = 0
    needs_local: ClassVar[str] = NEEDS_LOCAL_SEGMENTER


@dataclass(frozen=True)
class Mask:
    """One instance a segmenter found, in pixels of image ``image`` as given.

    Attributes:
        label: the prompt (or the box's label) it answers.
        score: the model's confidence, 0 to 1.
        box: ``(x1, y1, x2, y2)`` around it, in pixels.
        size: ``(height, width)`` of its image.
        counts: its pixels, COCO RLE (compressed, column-major).
        area: how many pixels it covers.
        centroid: ``(x, y)``, the mean of its pixels.
        image: which of the cell's images (0-based), or of a video's frames.
        track: which object it is through a video's frames (``-v``: the video
            tracker's object id), else ``None``.
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    size: tuple[int, int]
    counts: str
    area: int
    centroid: tuple[float, float]
    image: int = 0
    track: Optional[int] = None
    rle_format: ClassVar[str] = "coco-rle"

    @classmethod
    def from_array(
        cls,
        mask: np.ndarray,
        *,
        label: str,
        score: float,
        box: tuple[float, float, float, float],
        image: int = 0,
        track: Optional[int] = None,
    ) -> Mask:
        """The mask of a boolean (or 0/1) ``height × width`` array."""
        import numpy as np
        import supervision

        pixels = np.asarray(mask).astype(bool)
        ys, xs = np.nonzero(pixels)
        centroid = (float(xs.mean()), float(ys.mean())) if len(xs) else (0.0, 0.0)
        counts = supervision.mask_to_rle(pixels, compressed=True)
        return cls(
            label=label,
            score=float(score),
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            size=(int(pixels.shape[0]), int(pixels.shape[1])),
            counts=counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
            area=int(len(xs)),
            centroid=centroid,
            image=image,
            track=track,
        )

    @cached_property
    def mask(self) -> np.ndarray:
        """The boolean ``height × width`` array (decoded once, then kept)."""
        import supervision

        height, width = self.size
        return supervision.rle_to_mask(self.counts, resolution_wh=(width, height))

    def rle(self) -> dict[str, Any]:
        """``{"size": [h, w], "counts": "..."}``: COCO's RLE (``pycocotools.mask.decode`` reads it)."""
        return {"size": list(self.size), "counts": self.counts}

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: label, score, box and centroid rounded, area, image (and
        track), and the RLE."""
        tracked = {} if self.track is None else {"track": self.track}
        return {
            "label": self.label,
            "score": round(self.score, 4),
            "box": [round(value, 1) for value in self.box],
            "area": self.area,
            "centroid": [round(value, 1) for value in self.centroid],
            "image": self.image,
            **tracked,
            "rle": self.rle(),
        }


@dataclass(frozen=True)
class Segmentation:
    """Every mask a segmenter found for one :class:`SegmentRequest`, best first per image.

    Attributes:
        model_type: the segmenter's family as its config names it (``sam3_video``,
            ``sam3.1_video``).
        masks: the masks, image by image.
        unmatched: box prompts no mask covered (``--segment @boxes``).
        frames: the frames read from ``SegmentRequest.video`` (the masks'
            images; with a tracking id, in its first call only).
        timestamps: their times in the video (s).
        tracked: through a video, how many of its frames are tracked so far.
        done: through a video, whether every frame is tracked (with a tracking
            id: whether another call has frames to give).
    """

    model_type: str
    masks: tuple[Mask, ...] = ()
    unmatched: tuple[BoxPrompt, ...] = field(default=())
    frames: tuple[Image.Image, ...] = ()
    timestamps: tuple[float, ...] = ()
    tracked: int = 0
    done: bool = True


def segmenter_not_chat(name: str) -> str:
    """The one line for a segmenter given to a cell that asks for an answer."""
    return (
        f"'{name}' is a segmenter (SAM 3 / 3.1): it draws masks and does not answer; "
        f'%%mlx_vision --segment "TEXT" -m {name} segments, or pass a chat model'
    )
