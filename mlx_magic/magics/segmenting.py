"""``%%mlx_vision --segment`` and ``%mlx segment``: SAM 3 (or SAM 3.1) finds, outlines and counts.

The cell's flags are checked and its images loaded here; the runtime runs the
segmenter (a warm model like any other: the model cache, the GPU lock, MLX on
its owner thread; :meth:`~mlx_magic.runtime.interface.Runtime.segment`), one
image per call, so each image's masks are drawn on its preview as soon as it
is done and an interrupt stops between images. Through a video the
segmenter's tracker waits in the runtime between calls, a frame a call
(:data:`FRAMES_PER_CALL`): each frame is drawn on the strip as soon as it is
tracked, and an interrupt keeps the frames done. The footer counts the masks
(:mod:`mlx_magic.display.masks_view`). The result is ``_mlx``: ``_mlx.masks``
(:class:`~mlx_magic.vocabulary.masks.Mask`), ``_mlx.boxes``, ``_mlx.data``
(the JSON, masks run-length encoded).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.display.masks_view import MasksDisplay, Segmented
from mlx_magic.errors import GenerationInterrupted, UserError
from mlx_magic.images.video_sources import VideoSource, load_video_source
from mlx_magic.magics.lens import read_on_the_runtime
from mlx_magic.magics.prepare import check_video_flags, load_cell_images
from mlx_magic.vocabulary import defaults
from mlx_magic.vocabulary.masks import (
    NEEDS_LOCAL_SEGMENTER,
    BoxPrompt,
    Mask,
    SegmentRequest,
)

if TYPE_CHECKING:
    from mlx_magic.images import LoadedImage
    from mlx_magic.magics.session import MagicsHost, Session
    from mlx_magic.vocabulary.values import ModelSpec


@dataclass(frozen=True)
class Video:
    """``-v`` with ``--segment``: the video (a file the runtime reads, or
    frames), the rate to sample it at and the most frames to take."""

    source: VideoSource
    fps: float
    max_frames: int


#: The frames a call tracks through a video: one, so each frame is drawn as soon
#: as it is tracked and an interrupt waits one frame at most. A call costs a few
#: milliseconds (the worker's pipe included), a frame of a real SAM 3 ~160 ms an
#: object on an H100 (README), so more frames a call would save little.
FRAMES_PER_CALL = 1

#: The ``@`` names ``--segment`` takes: the latest answer's boxes, the boxes drawn last.
FROM_BOXES = "@boxes"
FROM_MARKS = "@marks"
# Flags that ask for an answer, which a segmenter does not give.
_NOT_WITH_SEGMENT = (
    ("map", "--map"),
    ("chat", "--chat"),
    ("background", "-b"),
    ("probs", "--probs"),
    ("attention", "--attention"),
)


def segment_cell(session: Session, args: Any, cell: str) -> Segmented:
    """Run ``%%mlx_vision --segment`` for the parsed ``args`` and the cell's text.

    Raises:
        UserError: a flag that asks for an answer, no prompt, no segmenter,
            a model that is not one, ``@boxes`` with no boxes in ``_mlx``, no
            image (one line each; nothing is run and ``_mlx`` is unchanged).
    """
    text = _prompt_text(args, cell)
    images = load_cell_images(session, tuple(args.image), args.region) if args.image else None
    video = None
    if args.video is not None:
        check_video_flags(args, session.settings.runtime)
        if text.startswith("@"):
            raise UserError(
                f"--segment {text} outlines one answer's boxes on its images: through a "
                '-v video, say what to track (--segment "car")'
            )
        max_frames = args.max_frames or defaults.VIDEO_MAX_FRAMES
        video = Video(
            load_video_source(args.video, session.shell.user_ns, max_frames),
            args.fps or defaults.VIDEO_FPS,
            max_frames,
        )
    json_out = args.format == "json"
    return segment(session, text, images, args.model or [], json_out, args.out, video)


def command_segment(magics: MagicsHost, names: list[str]) -> None:
    """``%mlx segment TEXT|@boxes|@marks``: SAM 3 on the images of the latest answer (``_mlx``).

    The ``default_segment_model`` segments them with the words (commas
    separate prompts), or outlines the answer's boxes (``@boxes``) or the
    boxes drawn last on a preview, on the images they were drawn on (``@marks``): the masks
    are drawn, counted and kept in ``_mlx.masks``, as ``%%mlx_vision --segment`` does.
    """
    text = " ".join(names).strip()
    if not text:
        raise UserError(
            f"Usage: %mlx segment TEXT|{FROM_BOXES}|{FROM_MARKS} (on the images of _mlx)"
        )
    segment(magics.session, text, None, [], False, None)


def segment(
    session: Session,
    text: str,
    images: Optional[list[LoadedImage]],
    models: list[str],
    as_json: bool,
    out: Optional[str],
    video: Optional[Video] = None,
) -> Segmented:
    """Segment ``images`` (``None``: those of the latest answer), or track
    through ``video``, with ``text`` (prompts, or ``@boxes``); show, keep in
    ``_mlx`` (and ``out``), return the masks."""
    spec = _segmenter(session, models)
    namespace = session.shell.user_ns
    prompts: tuple[str, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    if text == FROM_BOXES:
        boxes = _latest_boxes(namespace.get("_mlx"))
    elif text == FROM_MARKS:
        boxes, drawn_on = _drawn_boxes(session)
        if images is None:  # the images the boxes were drawn on
            images = list(drawn_on)
    elif text.startswith("@"):
        raise UserError(
            f"--segment {text}: the @ it takes are {FROM_BOXES} (the boxes of the latest "
            f"answer, _mlx.boxes) and {FROM_MARKS} (the boxes drawn on a preview); else give "
            'words: --segment "cups"'
        )
    else:
        prompts = tuple(part.strip() for part in text.split(",") if part.strip())
    threshold = session.settings.segment_threshold
    if video is not None:
        request = SegmentRequest(
            spec,
            video.source.frames,
            prompts,
            threshold=threshold,
            track=True,
            video=video.source.path,
            video_fps=video.fps,
            video_max_frames=video.max_frames,
        )
    else:
        if images is None:
            images = _latest_images(session, namespace.get("_mlx"))
        pictures = [(loaded.image, loaded.caption) for loaded in images]
        request = SegmentRequest(
            spec, tuple(image for image, _ in pictures), prompts, boxes, threshold=threshold
        )
    if video is not None:
        pictures = _frame_pictures(request.images, (), video.fps)
        doing = (
            f"tracking {f'{len(pictures)} frames' if pictures else 'the video'} with {spec.name}"
        )
    else:
        doing = f"segmenting {len(pictures)} image{'s' * (len(pictures) != 1)} with {spec.name}"
    warm = any(info.key == spec.key for info in session.runtime.models())
    display = MasksDisplay(
        session.shell,
        pictures,
        doing + ("" if warm else " (loading it first)") + "…",
        video=video is not None,
    )
    if video is not None:
        masks, pictures, timestamps, took, stopped = _each_frame(
            session, request, display, spec.name, video.fps, pictures
        )
        unmatched: tuple[BoxPrompt, ...] = ()
    else:
        timestamps = ()
        masks, unmatched, took, stopped = _each_image(session, request, display, doing)
    result = Segmented(
        masks,
        prompts or tuple(dict.fromkeys(box.label for box in boxes)),
        spec.name,
        took,
        # Through a video, the frames tracked (all, unless interrupted).
        images=tuple(image for image, _ in pictures[: len(timestamps) or None]),
        unmatched=unmatched,
        timestamps=timestamps,
        stopped=stopped,
    )
    display.finish(result, pictures, as_json=as_json)
    namespace["_mlx"] = result
    if out:
        namespace[out] = result
    if stopped:
        raise GenerationInterrupted(f"{stopped}; _mlx keeps the masks found")
    return result


def _each_image(
    session: Session, request: SegmentRequest, display: MasksDisplay, doing: str
) -> tuple[list[Mask], tuple[BoxPrompt, ...], float, str]:
    """Segment ``request``'s images one at a time (a runtime call each, the
    same for the thread and the worker process), drawing each image's masks as
    soon as it is done (``doing`` says what, with how many are done). An
    interrupt stops between images and keeps those done.

    Returns:
        the masks, the box prompts no mask covered, the runtime's time (s),
        and why it stopped early ("" when every image is done).

    Raises:
        GenerationInterrupted: interrupted before the first image was done.
    """
    masks: list[Mask] = []
    unmatched: list[BoxPrompt] = []
    took = 0.0
    done, count = 0, len(request.images)
    try:
        for index, image in enumerate(request.images):
            # The image's own request: its box prompts, counted from it.
            boxes = tuple(replace(box, image=0) for box in request.boxes if box.image == index)
            part = replace(request, images=(image,), boxes=boxes)
            found, seconds = read_on_the_runtime(
                session, "the masks", partial(session.runtime.segment, part)
            )
            took += seconds
            masks = masks + [replace(mask, image=index) for mask in found.masks]
            unmatched += [replace(box, image=index) for box in found.unmatched]
            done = index + 1
            if done < count:  # the last one is drawn with the footer
                display.show(masks, done, f"{doing}: {done} of {count} done…")
    except KeyboardInterrupt:
        # Between images or while drawing one: what is done is kept.
        if not done:
            display.withdraw()
            raise
        return masks, tuple(unmatched), took, f"stopped after image {done} of {count}"
    except BaseException:
        display.withdraw()
        raise
    return masks, tuple(unmatched), took, ""


def _each_frame(
    session: Session,
    request: SegmentRequest,
    display: MasksDisplay,
    model: str,
    fps: float,
    pictures: list,
) -> tuple[list[Mask], list, tuple[float, ...], float, str]:
    """Track through ``request``'s video a few frames a call (:data:`FRAMES_PER_CALL`),
    under a tracking id of its own (``pictures``: the frames shown so far, with
    their captions): the first call reads the video, detects on
    its first frame and starts the tracker, which waits in the runtime for the
    next call. Each frame is drawn on the strip as soon as it is tracked; an
    interrupt stops between calls and keeps the frames done (the runtime's
    tracker is ended by the next segment call).

    Returns:
        the masks, the frames (with their times as captions), the times of
        those tracked (s), the runtime's time (s), and why it stopped early
        ("" when every frame is done).

    Raises:
        GenerationInterrupted: interrupted before the first frame was done.
    """
    asked = replace(request, tracking=uuid.uuid4().hex, frames_wanted=FRAMES_PER_CALL)
    masks: list[Mask] = []
    times: tuple[float, ...] = ()
    took = 0.0
    done = 0
    try:
        while True:
            found, seconds = read_on_the_runtime(
                session, "the masks", partial(session.runtime.segment, asked)
            )
            took += seconds
            if not times:  # the first call: the frames read, and their times
                frames = found.frames or request.images
                times = found.timestamps or tuple(
                    round(index / fps, 2) for index in range(len(frames))
                )
                pictures = _frame_pictures(frames, times, fps)
                # The runtime keeps them: the calls that follow send none.
                asked = replace(asked, images=(), video=None)
            masks += found.masks
            done = found.tracked
            if found.done:  # the last one is drawn with the footer
                return masks, pictures, times, took, ""
            note = f"tracking with {model}: {done} of {len(pictures)} frames…"
            display.show(masks, done, note, pictures)
    except KeyboardInterrupt:
        # Between frames or while drawing one: what is done is kept.
        if not done:
            display.withdraw()
            raise
        return masks, pictures, times[:done], took, f"stopped after frame {done} of {len(times)}"
    except BaseException:
        display.withdraw()
        raise


def _frame_pictures(frames: tuple, timestamps: tuple, fps: float) -> list:
    """A video's frames with their times as captions (frames from a variable: by ``fps``)."""
    times = timestamps or tuple(round(index / fps, 2) for index in range(len(frames)))
    return [(frame, f"{at:.1f} s") for frame, at in zip(frames, times)]


def _prompt_text(args: Any, cell: str) -> str:
    for name, flag in _NOT_WITH_SEGMENT:
        if getattr(args, name, None):
            raise UserError(
                f"--segment runs SAM 3, which gives masks, not an answer: leave out {flag} "
                "(or --segment)"
            )
    given, body = (args.segment or "").strip(), cell.strip()
    if given and body:
        raise UserError(
            f"--segment {given!r} and the cell's text both say what to find: keep one "
            "(the cell's text is the prompt when --segment has none)"
        )
    if not args.image and args.video is None and not (given or body).startswith("@"):
        raise UserError(
            "--segment needs an image: add -i SRC (%%mlx_vision -i photo.jpg --segment)"
        )
    if not (given or body):
        raise UserError(
            'Say what to segment: --segment "cups" (commas separate prompts), the cell\'s '
            f"text, or --segment {FROM_BOXES} for the boxes of the latest answer"
        )
    return given or body


def _segmenter(session: Session, models: list[str]) -> ModelSpec:
    settings = session.settings
    if settings.runtime == "remote":
        raise UserError(NEEDS_LOCAL_SEGMENTER)
    if len(models) > 1:
        raise UserError("--segment runs one segmenter: pass one -m")
    name: Optional[str] = models[0] if models else settings.default_segment_model
    if name is None:
        raise UserError(
            "No segment model: pass -m (a SAM 3 or SAM 3.1 folder or Hub id), or set %config "
            "MLXMagics.default_segment_model = 'facebook/sam3'"
        )
    spec = session.resolve(name)
    if spec.kind != "segmenter":
        raise UserError(
            f"--segment needs a segmenter (SAM 3 or 3.1): '{spec.name}' is a {spec.kind} model; pass "
            "-m a SAM 3 or SAM 3.1 folder or Hub id, or set MLXMagics.default_segment_model"
        )
    return spec


def _latest_boxes(latest: object) -> tuple[BoxPrompt, ...]:
    found = list(getattr(latest, "boxes", None) or [])
    if not found:
        raise UserError(
            f"--segment {FROM_BOXES} outlines the boxes of the latest answer, and _mlx has "
            "none: ask a vision model for boxes first (bbox_2d JSON), or --segment TEXT"
        )
    return tuple(BoxPrompt(b.label, b.x1, b.y1, b.x2, b.y2, b.image) for b in found)


def _drawn_boxes(session: Session) -> tuple[tuple[BoxPrompt, ...], tuple[LoadedImage, ...]]:
    """The boxes drawn last on a preview (``%mlx marks``) as box prompts, each
    labelled as drawn (else ``mark N``), and the images they were drawn on."""
    latest = session.latest_marks.previews
    marks = [m for m in (latest.shown_marks if latest is not None else ()) if m.kind == "box"]
    if latest is None or not marks:
        raise UserError(
            f"--segment {FROM_MARKS} outlines the boxes drawn on a %%mlx_vision preview, and "
            f"none is drawn: drag a box on a preview first, or use {FROM_BOXES} or TEXT"
        )
    prompts = tuple(
        BoxPrompt(mark.label or f"mark {mark.number}", *mark.box, image=mark.image)
        for mark in marks
    )
    return prompts, tuple(latest.images)


def _latest_images(session: Session, latest: object) -> list[LoadedImage]:
    """The images the latest answer was about (its boxes are in their pixels)."""
    from mlx_magic.images import load_images

    images = getattr(latest, "images", None) if hasattr(latest, "masks") else None
    if images is None:
        request = getattr(latest, "request", None)
        images = request.images_by_turn()[1] if request is not None else ()
    images = tuple(images or ())
    # Captioned as the answer's variables were ("photo"); the images are already
    # decoded, so other sources (files, URLs, Out[3]) are named by their place.
    infos = [i for i in getattr(latest, "images", None) or () if isinstance(i, dict)]
    sources = [str(info.get("source", "")) for info in infos][-len(images) :] if images else []
    if len(sources) != len(images):
        sources = [""] * len(images)
    names: dict = {}
    for i, (source, image) in enumerate(zip(sources, images), 1):
        usable = source.isidentifier() and not source.startswith("_") and source not in names
        names[source if usable else f"answer_image_{i}"] = image
    if not names:
        raise UserError(
            "Nothing to segment: _mlx holds no answer about images; %%mlx_vision -i SRC --segment"
        )
    return load_images(list(names), names, cache=session.image_cache)
