"""SAM 3 on the runtime thread: load a segmenter, and find masks from text and box prompts.

mlx-vlm's own pieces do the work: ``load_model`` and ``Sam3Processor`` load
the folder (as its ``_load_predictor`` does, without its prints),
``Sam3Predictor`` and ``predict_multi`` run the detector once per image (the
vision backbone once, then each text prompt), with their non-maximum
suppression. Box prompts (``--segment @boxes``) go to the predictor as its
box prompts, one label at a time, and each box keeps the mask that best
covers it, as mlx-vlm's ``run_image`` keeps the detections inside its
regions. Through a video's frames (``-v``), SAM 3's video predictor
(``Sam3VideoPredictor``) tracks: each instance the detector finds on the first
frame becomes an object it follows, from its box, by its memory of the frames
before; the object's id is its track id. The masks leave here run-length
encoded (:class:`~mlx_magic.vocabulary.masks.Mask`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_magic.engine.model_cache import WarmModel, config_dict
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.masks import BoxPrompt, Mask, Segmentation, SegmentRequest

#: The lowest overlap (intersection over union) a mask's box must have with a
#: box prompt to outline it.
MIN_BOX_IOU = 0.1
#: mlx-vlm's predictor reads a threshold of 0 as "its default": the lowest one passed.
_LOWEST_THRESHOLD = 1e-6
#: The feature grid mlx-vlm's video predictor tracks at: it resizes each mask
#: it remembers to 1152 pixels, 72 after its memory encoder's stride of 16
#: (``Sam3VideoPredictor._update_memory``), as SAM 3's 1008-pixel input in 14-pixel patches.
TRACKING_GRID = 1152 // 16


def load_segmenter(path: str) -> tuple[Any, Any, dict]:
    """The SAM 3 model, its processor and its config, from a local folder.

    The processor reads prompts with the folder's own CLIP tokenizer when it
    has one (mlx-vlm's would fetch openai/clip-vit-base-patch32 from the hub
    on first use).
    """
    from mlx_vlm.models.sam3.processing_sam3 import Sam3Processor
    from mlx_vlm.utils import load_config, load_model

    folder = Path(path)
    model = load_model(folder)
    processor = Sam3Processor.from_pretrained(str(folder))
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
        from transformers import CLIPTokenizer

        processor._tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    return model, processor, load_config(folder)


def segment(warm: WarmModel, asked: SegmentRequest) -> Segmentation:
    """Every mask ``warm`` (a SAM 3) finds in ``asked.images``: for each text
    prompt, and one per box prompt; through a video's frames, each instance of
    the first frame tracked, with its track id (:func:`_tracked`).
    Runs on the runtime thread, under the GPU lock."""
    from mlx_vlm.models.sam3.generate import Sam3Predictor

    threshold = max(float(asked.threshold), _LOWEST_THRESHOLD)
    predictor = Sam3Predictor(warm.model, warm.tokenizer, score_threshold=threshold)
    frames: tuple = ()
    timestamps: tuple = ()
    images = asked.images
    if asked.video is not None:
        from mlx_magic.engine.video_inputs import read_video_file

        _, pictures, timestamps, _ = read_video_file(
            asked.video, asked.video_fps, asked.video_max_frames
        )
        images = frames = tuple(pictures)
    model_type = str(config_dict(warm.config).get("model_type", "sam3"))
    masks: list[Mask] = []
    unmatched: list[BoxPrompt] = []
    with gpu_lock:
        if asked.track or asked.video is not None:
            masks = _tracked(warm, predictor, list(images), list(asked.prompts), threshold)
            return Segmentation(model_type, tuple(masks), (), frames, timestamps)
        for index, image in enumerate(images):
            rgb = image.convert("RGB")
            if asked.prompts:
                masks += _detected(predictor, rgb, list(asked.prompts), None, threshold, index)
            boxes = [box for box in asked.boxes if box.image == index]
            for label in dict.fromkeys(box.label for box in boxes):
                same = [box for box in boxes if box.label == label]
                found = _detected(predictor, rgb, [label or "object"], same, threshold, index)
                kept, missed = _one_per_box(found, same)
                masks += kept
                unmatched += missed
    return Segmentation(model_type, tuple(masks), tuple(unmatched), frames, timestamps)


def _tracked(
    warm: WarmModel, predictor: Any, frames: list, prompts: list[str], threshold: float
) -> list[Mask]:
    """SAM 3's video predictor through ``frames``: each instance the detector
    finds on the first frame (every prompt) is an object it tracks from its
    box; frame by frame, each object's mask (at the frame's size) with the
    predictor's object id as its track id. An object lost in a frame has no mask there.

    Raises:
        UserError: a SAM 3 whose features are not the 72 × 72 grid the video
            predictor tracks at (one line).
    """
    import numpy as np
    from mlx_vlm.models.sam3.generate import Sam3VideoPredictor, predict_multi

    tracker = warm.model.config.tracker_config
    grid = tracker.image_size // tracker.vision_config.backbone_config.patch_size
    if grid != TRACKING_GRID:
        raise UserError(
            f"-v with --segment tracks with SAM 3's video predictor (mlx-vlm), which needs "
            f"SAM 3's {TRACKING_GRID} × {TRACKING_GRID} patches (1008-px input); this model "
            f"has {grid} × {grid}: pass -m a full SAM 3 (facebook/sam3)"
        )
    rgb = [frame.convert("RGB") for frame in frames]
    if not rgb or not prompts:
        return []
    width, height = rgb[0].size
    first = predict_multi(predictor, rgb[0], prompts, score_threshold=threshold)
    labels = first.labels or [prompts[0]] * len(first.scores)
    video = Sam3VideoPredictor(warm.model, warm.tokenizer, score_threshold=threshold)
    video.set_video(rgb)
    named: dict[int, str] = {}
    for box, label in zip(first.boxes, labels):
        # The tracker's prompt encoder reads a box as corners in 0..1 of the picture.
        corners = np.array(box, np.float32) / np.array([width, height, width, height], np.float32)
        named[video.add_box_prompt(np.clip(corners, 0.0, 1.0), frame_idx=0)] = label
    masks: list[Mask] = []
    for result in video.propagate() if named else ():
        for track, low, score in zip(result.object_ids, result.masks, result.scores):
            # Nearest pixels picked by index: the tracker's masks are at its own size (288).
            rows = (np.arange(height) * low.shape[0] // height)[:, None]
            columns = (np.arange(width) * low.shape[1] // width)[None, :]
            pixels = np.asarray(low)[rows, columns] > 0
            ys, xs = np.nonzero(pixels)
            if not len(xs):
                continue  # lost in this frame
            masks.append(
                Mask.from_array(
                    pixels,
                    label=named[track],
                    score=min(max(float(score), 0.0), 1.0),  # the tracker's IoU guess
                    box=(
                        float(xs.min()),
                        float(ys.min()),
                        float(xs.max() + 1),
                        float(ys.max() + 1),
                    ),
                    image=int(result.frame_idx),
                    track=int(track),
                )
            )
    return masks


def _detected(
    predictor: Any,
    image: Any,
    prompts: list[str],
    boxes: list[BoxPrompt] | None,
    threshold: float,
    index: int,
) -> list[Mask]:
    """mlx-vlm's ``predict_multi`` on one image, its masks encoded, best first."""
    import numpy as np
    from mlx_vlm.models.sam3.generate import predict_multi

    box_array = None
    if boxes:
        box_array = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float32)
    result = predict_multi(predictor, image, prompts, boxes=box_array, score_threshold=threshold)
    labels = result.labels or [prompts[0]] * len(result.scores)
    found = [
        Mask.from_array(
            result.masks[i],
            label=labels[i],
            score=float(result.scores[i]),
            box=tuple(float(v) for v in result.boxes[i]),  # type: ignore[arg-type]
            image=index,
        )
        for i in range(len(result.scores))
    ]
    return sorted(found, key=lambda mask: -mask.score)


def _one_per_box(found: list[Mask], boxes: list[BoxPrompt]) -> tuple[list[Mask], list[BoxPrompt]]:
    """For each box prompt, the mask whose box overlaps it most (each mask
    outlines one box at most), with the box's label; and the boxes none covered."""
    kept: list[Mask] = []
    missed: list[BoxPrompt] = []
    taken: set[int] = set()
    for box in boxes:
        best, best_iou = None, MIN_BOX_IOU
        for i, mask in enumerate(found):
            overlap = _iou(mask.box, (box.x1, box.y1, box.x2, box.y2))
            if i not in taken and overlap >= best_iou:
                best, best_iou = i, overlap
        if best is None:
            missed.append(box)
            continue
        taken.add(best)
        kept.append(_relabelled(found[best], box.label))
    return kept, missed


def _relabelled(mask: Mask, label: str) -> Mask:
    from dataclasses import replace

    return replace(mask, label=label) if label else mask


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
