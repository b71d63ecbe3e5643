"""SAM 3 and SAM 3.1 on the runtime thread: load a segmenter, and find masks from text and box prompts.

mlx-vlm's own pieces do the work: ``load_model`` and the family's processor
load the folder (as its ``_load_predictor`` does, without its prints),
``Sam3Predictor`` and the family's ``predict_multi`` run the detector once per
image (the vision backbone once, then each text prompt), with their non-maximum
suppression. The two families differ in a few functions only, picked once
(:func:`_family`): SAM 3.1's vision neck gives three feature sets (detection,
interactive, propagation), so it has its own ``predict_multi``, and its own
tracker. Box prompts (``--segment @boxes``) go to the predictor as its box
prompts, one label at a time, and each box keeps the mask that best covers it,
as mlx-vlm's ``run_image`` keeps the detections inside its regions (SAM 3.1's
detector in mlx-vlm reads no box prompts: there the box only picks among what
the label finds). Through a video's frames (``-v``), each instance the detector
finds on the first frame becomes an object the family's tracker follows by its
memory of the frames before: SAM 3's video predictor (``Sam3VideoPredictor``)
from its box, SAM 3.1's multiplex tracker from its mask; the object's id is
its track id. The masks leave here run-length encoded
(:class:`~mlx_magic.vocabulary.masks.Mask`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from mlx_magic.engine.model_cache import WarmModel, config_dict
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.models.resolve import SAM31_TYPES
from mlx_magic.vocabulary.masks import BoxPrompt, Mask, Segmentation, SegmentRequest

#: The lowest overlap (intersection over union) a mask's box must have with a
#: box prompt to outline it.
MIN_BOX_IOU = 0.1
#: mlx-vlm's predictor reads a threshold of 0 as "its default": the lowest one passed.
_LOWEST_THRESHOLD = 1e-6
#: The feature grid mlx-vlm's SAM 3 video predictor tracks at: it resizes each
#: mask it remembers to 1152 pixels, 72 after its memory encoder's stride of 16
#: (``Sam3VideoPredictor._update_memory``), as SAM 3's 1008-pixel input in 14-pixel
#: patches. SAM 3.1's tracker reads its sizes from the config: any grid tracks.
TRACKING_GRID = 1152 // 16

#: What a tracker yields for each frame: the frame's index and, for each object
#: in it, its id, which of the first frame's detections it is, its mask logits
#: (any size: stretched to the frame's) and its score. A frame at a time, so
#: that a call can stop after any frame and the next one go on from there.
Followed = tuple[int, list[tuple[int, int, Any, float]]]


@dataclass(frozen=True)
class _Family:
    """What differs between SAM 3 and SAM 3.1 in mlx-vlm; the rest (``Sam3Predictor``,
    its post-processing, its NMS) is SAM 3's, which SAM 3.1 imports.

    Attributes:
        processor: mlx-vlm's processor class for the folder.
        predict_multi: mlx-vlm's ``predict_multi`` of the family.
        follow: the family's tracker through a video's frames (:data:`Followed`).
        untrackable: why a model of the family cannot track (one line), or ``None``.
    """

    processor: Any
    predict_multi: Callable[..., Any]
    follow: Callable[[WarmModel, list, Any, float], Iterable[Followed]]
    untrackable: Callable[[Any], Optional[str]]


def _family(model_type: str) -> _Family:
    """mlx-vlm's functions for the segmenter's family: the one place that picks them."""
    if model_type.lower() in SAM31_TYPES:
        from mlx_vlm.models.sam3_1.generate import predict_multi as sam31_predict_multi
        from mlx_vlm.models.sam3_1.processing_sam3_1 import Sam31Processor

        # Its tracker reads every size from the config: any grid tracks.
        return _Family(Sam31Processor, sam31_predict_multi, _follow_multiplex, lambda _: None)
    from mlx_vlm.models.sam3.generate import predict_multi
    from mlx_vlm.models.sam3.processing_sam3 import Sam3Processor

    return _Family(Sam3Processor, predict_multi, _follow_sam3, _sam3_untrackable)


def load_segmenter(path: str) -> tuple[Any, Any, dict]:
    """The SAM 3 (or SAM 3.1) model, its processor and its config, from a local folder.

    The processor reads prompts with the folder's own CLIP tokenizer when it
    has one (mlx-vlm's would fetch openai/clip-vit-base-patch32 from the hub
    on first use).
    """
    from mlx_vlm.utils import load_config, load_model

    folder = Path(path)
    config = load_config(folder)
    model = load_model(folder)
    family = _family(str(config.get("model_type", "")))
    processor = family.processor.from_pretrained(str(folder))
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
        from transformers import CLIPTokenizer

        processor._tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    return model, processor, config


def segment(warm: WarmModel, asked: SegmentRequest) -> Segmentation:
    """Every mask ``warm`` (a SAM 3 or SAM 3.1) finds in ``asked.images``: for
    each text prompt, and one per box prompt; through a video's frames, each
    instance of the first frame tracked, with its track id (:class:`_Tracking`;
    with ``asked.tracking``, a few frames a call).
    Runs on the runtime thread, under the GPU lock."""
    from mlx_vlm.models.sam3.generate import Sam3Predictor

    global _tracking
    model_type = str(config_dict(warm.config).get("model_type", "sam3"))
    going = _tracking
    if asked.tracking and going is not None and going.id == asked.tracking:
        try:
            with gpu_lock:
                advanced = going.advance(asked.frames_wanted, model_type)
        except BaseException:
            drop_tracking()  # a tracker that failed cannot go on
            raise
        if advanced.done:
            drop_tracking()
        return advanced
    # Any other call ends the tracking that waits: its frames' features are freed.
    drop_tracking()
    if asked.tracking and not asked.images and asked.video is None:
        raise UserError(_TRACKING_LOST)
    family = _family(model_type)
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
    masks: list[Mask] = []
    unmatched: list[BoxPrompt] = []
    with gpu_lock:
        if asked.track or asked.video is not None:
            started = _Tracking.start(
                asked.tracking,
                warm,
                family,
                predictor,
                list(images),
                list(asked.prompts),
                threshold,
            )
            first = started.advance(asked.frames_wanted, model_type)
            if asked.tracking and not first.done:  # the rest in the calls that follow
                _tracking = started
            return replace(first, frames=frames, timestamps=timestamps)
        for index, image in enumerate(images):
            rgb = image.convert("RGB")
            if asked.prompts:
                masks += _detected(
                    family, predictor, rgb, list(asked.prompts), None, threshold, index
                )
            boxes = [box for box in asked.boxes if box.image == index]
            for label in dict.fromkeys(box.label for box in boxes):
                same = [box for box in boxes if box.label == label]
                found = _detected(
                    family, predictor, rgb, [label or "object"], same, threshold, index
                )
                kept, missed = _one_per_box(found, same)
                masks += kept
                unmatched += missed
    return Segmentation(model_type, tuple(masks), tuple(unmatched), frames, timestamps)


#: Why a tracking id is not the one waiting (one line).
_TRACKING_LOST = (
    "The video's tracking was ended (another segment cell ran, or the model was "
    "unloaded): run the cell again"
)


@dataclass
class _Tracking:
    """A video being tracked between calls: the family's tracker, paused after
    ``tracked`` frames, and what turns its logits into masks.

    Attributes:
        id: the tracking id the magic gave (``SegmentRequest.tracking``).
        key: the segmenter's warm-model key (the tracker holds its weights).
        steps: the tracker, a frame at a time (:data:`Followed`).
        labels: each first-frame detection's label.
        size: the frames' ``(width, height)``.
        count: how many frames there are.
        tracked: how many are done.
    """

    id: str
    key: str
    steps: Iterator[Followed]
    labels: list[str]
    size: tuple[int, int]
    count: int
    tracked: int = 0

    @classmethod
    def start(
        cls,
        id: str,
        warm: WarmModel,
        family: _Family,
        predictor: Any,
        frames: list,
        prompts: list[str],
        threshold: float,
    ) -> _Tracking:
        """Detect on the first frame and start the family's tracker on what it
        finds (every prompt; nothing found: nothing to track); the tracker runs
        only as :meth:`advance` asks for frames.

        Raises:
            UserError: a model its family's tracker cannot run (one line).
        """
        problem = family.untrackable(warm.model)
        if problem:
            raise UserError(problem)
        rgb = [frame.convert("RGB") for frame in frames]
        size = rgb[0].size if rgb else (0, 0)
        nothing = cls(id, warm.key, iter(()), [], size, len(rgb))
        if not rgb or not prompts:
            return nothing
        first = family.predict_multi(predictor, rgb[0], prompts, score_threshold=threshold)
        if not len(first.scores):
            return nothing
        labels = first.labels or [prompts[0]] * len(first.scores)
        steps = iter(family.follow(warm, rgb, first, threshold))
        return cls(id, warm.key, steps, labels, size, len(rgb))

    def advance(self, wanted: int, model_type: str) -> Segmentation:
        """The masks of the next ``wanted`` frames (0: every frame left), each
        object's at the frame's size with the tracker's id as its track id (an
        object lost in a frame has no mask there); ``done`` after the last."""
        import numpy as np

        width, height = self.size
        masks: list[Mask] = []
        stop = self.count if wanted <= 0 else min(self.count, self.tracked + wanted)
        while self.tracked < stop:
            step = next(self.steps, None)
            if step is None:  # nothing was found to track: every frame is done, empty
                self.tracked = self.count
                break
            frame, objects = step
            for track, found, logits, score in objects:
                # Nearest pixels picked by index: the trackers' masks are at their own size.
                rows = (np.arange(height) * logits.shape[0] // height)[:, None]
                columns = (np.arange(width) * logits.shape[1] // width)[None, :]
                pixels = np.asarray(logits)[rows, columns] > 0
                ys, xs = np.nonzero(pixels)
                if not len(xs):
                    continue  # lost in this frame
                box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
                masks.append(
                    Mask.from_array(
                        pixels,
                        label=self.labels[found],
                        score=min(max(float(score), 0.0), 1.0),
                        box=box,
                        image=frame,
                        track=track,
                    )
                )
            self.tracked = frame + 1
        return Segmentation(
            model_type, tuple(masks), tracked=self.tracked, done=self.tracked >= self.count
        )


#: The video being tracked between calls, if any: one at a time, on the
#: runtime's owner thread (where every segment call runs).
_tracking: Optional[_Tracking] = None


def drop_tracking(key: Optional[str] = None) -> None:
    """End the tracking that waits (only of the model ``key``, if given): the
    tracker and its frames' features are freed."""
    global _tracking
    if _tracking is not None and key in (None, _tracking.key):
        steps, _tracking = _tracking.steps, None
        close = getattr(steps, "close", None)
        if close is not None:
            close()


def _sam3_untrackable(model: Any) -> Optional[str]:
    """Why mlx-vlm's SAM 3 video predictor cannot track ``model``: features off its grid."""
    tracker = model.config.tracker_config
    grid = tracker.image_size // tracker.vision_config.backbone_config.patch_size
    if grid == TRACKING_GRID:
        return None
    return (
        f"-v with --segment tracks with SAM 3's video predictor (mlx-vlm), which needs "
        f"SAM 3's {TRACKING_GRID} × {TRACKING_GRID} patches (1008-px input); this model "
        f"has {grid} × {grid}: pass -m a full SAM 3 (facebook/sam3)"
    )


def _follow_sam3(warm: WarmModel, rgb: list, first: Any, threshold: float) -> Iterable[Followed]:
    """SAM 3's video predictor: each detection of the first frame an object
    prompted by its box, then followed by its memory; the predictor's ids.
    Its masks are at its own size (288), its scores its IoU guesses."""
    import numpy as np
    from mlx_vlm.models.sam3.generate import Sam3VideoPredictor

    width, height = rgb[0].size
    video = Sam3VideoPredictor(warm.model, warm.tokenizer, score_threshold=threshold)
    video.set_video(rgb)
    detection: dict[int, int] = {}
    for index, box in enumerate(first.boxes):
        # The tracker's prompt encoder reads a box as corners in 0..1 of the picture.
        corners = np.array(box, np.float32) / np.array([width, height, width, height], np.float32)
        detection[video.add_box_prompt(np.clip(corners, 0.0, 1.0), frame_idx=0)] = index
    # A frame per propagate: the predictor keeps its memory between calls, and
    # its propagate() over every frame would run them all before returning.
    for index in range(len(rgb)):
        for result in video.propagate(index, index + 1):
            objects = zip(result.object_ids, result.masks, result.scores)
            yield (
                int(result.frame_idx),
                [
                    (int(track), detection[track], logits, float(score))
                    for track, logits, score in objects
                ],
            )


def _follow_multiplex(
    warm: WarmModel, rgb: list, first: Any, threshold: float
) -> Iterable[Followed]:
    """SAM 3.1's multiplex tracker, driven as mlx-vlm's ``track_video_realtime``
    drives it: the first frame's detection masks condition it (its output there
    is those masks), then each later frame is propagated from its memory. The
    objects are numbered 1, 2, … in the detections' order, as SAM 3's
    predictor numbers them; masks at the tracker's square input size, scores
    its object presence (it has no threshold of its own: the detections had theirs)."""
    import mlx.core as mx
    import numpy as np

    model = warm.model
    side = model.config.tracker_config.image_size
    detections = np.asarray(first.masks)
    # Stretched to the tracker's square, as the processor stretches the frame.
    rows = (np.arange(side) * detections.shape[1] // side)[:, None]
    columns = (np.arange(side) * detections.shape[2] // side)[None, :]
    squares = (detections[:, rows, columns] > 0).astype(np.float32)
    ids = list(range(1, len(squares) + 1))

    def backbone(frame: Any) -> Any:
        pixels = mx.array(warm.tokenizer.preprocess_image(frame)["pixel_values"])
        features = model.detector_model.vision_encoder.backbone(pixels)
        mx.eval(features)
        return features

    state = model.tracker_init_state(len(ids), object_ids=ids)
    state, out = model.track_init(backbone(rgb[0]), mx.array(squares), state=state)
    for index in range(len(rgb)):
        if index:
            out = model.track_step(state, backbone(rgb[index]), index)
        logits = np.asarray(out["pred_masks_high_res"][:, 0])
        scores = np.asarray(mx.sigmoid(out["object_score_logits"][:, 0]))
        yield (
            index,
            [
                (track, found, logits[found], float(scores[found]))
                for found, track in enumerate(ids)
            ],
        )


def _detected(
    family: _Family,
    predictor: Any,
    image: Any,
    prompts: list[str],
    boxes: list[BoxPrompt] | None,
    threshold: float,
    index: int,
) -> list[Mask]:
    """The family's ``predict_multi`` on one image, its masks encoded, best first."""
    import numpy as np

    box_array = None
    if boxes:
        box_array = np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=np.float32)
    result = family.predict_multi(
        predictor, image, prompts, boxes=box_array, score_threshold=threshold
    )
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
    return replace(mask, label=label) if label else mask


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
