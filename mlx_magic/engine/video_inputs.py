"""A video for a vision model: read and sampled with mlx-vlm's own reader (runtime thread).

mlx-vlm reads video files with OpenCV (``mlx_vlm.utils.load_video``) and
hands the frames to the model's video processor (Qwen2-VL and its
successors). The clip is read here, once, so the cell can show the frames
that were really sent, with their times, before the prompt is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlx_magic.errors import UserError
from mlx_magic.vocabulary.values import GenerationRequest, VideoPrepared

if TYPE_CHECKING:
    from mlx_magic.engine.model_cache import WarmModel

#: Side of the preview strip's thumbnails, in pixels.
STRIP_SIDE = 128


@dataclass
class Clip:
    """Frames ready for the processor: ``frames`` is ``T × C × H × W`` uint8."""

    frames: object
    fps: float
    prepared: VideoPrepared


def check_takes_video(warm: WarmModel, model_name: str) -> None:
    """Raise a one-line :class:`UserError` when the model cannot take video."""
    from mlx_vlm.generate.video import processor_handles_video

    if not processor_handles_video(warm.tokenizer):
        raise UserError(
            f"{model_name} does not take video (its processor has no video processor): "
            "send some frames as images instead, e.g. -i 'frames/*.png'"
        )


def read_clip(request: GenerationRequest) -> Clip:
    """The request's video as sampled frames, from its file or its frames.

    Raises:
        UserError: the file is not a video OpenCV can open, or has no frames.
    """
    import numpy as np

    if request.video is not None:
        array, pictures, timestamps, fps = read_video_file(
            request.video, request.video_fps, request.video_max_frames
        )
        source = request.video
    else:
        pictures = [frame.convert("RGB") for frame in request.video_frames]
        size = pictures[0].size
        # The processor stacks frames: all must be one size.
        pictures = [frame if frame.size == size else frame.resize(size) for frame in pictures]
        array = np.stack([np.transpose(np.asarray(frame), (2, 0, 1)) for frame in pictures])
        fps = float(request.video_fps)
        timestamps = tuple(round(index / fps, 2) for index in range(len(pictures)))
        source = "frames"
    if len(pictures) < 2:
        # Qwen2-VL's processor pairs frames in time: one frame is no video.
        raise UserError(
            f"the video {source!r} gave {len(pictures)} frame(s); a video needs 2 or more "
            "(raise --fps or --max-frames, or send the frame with -i)"
        )
    thumbs = []
    for picture in pictures:
        thumb = picture.copy()
        thumb.thumbnail((STRIP_SIDE, STRIP_SIDE))
        thumbs.append(thumb)
    return Clip(array, fps, VideoPrepared(source, tuple(thumbs), timestamps))


def read_video_file(path: str, fps: float, max_frames: int) -> tuple[Any, list, tuple, float]:
    """A video file sampled by mlx-vlm's reader: the ``T × C × H × W`` frames,
    the same as RGB images, their times (s) and the rate they were taken at.

    Raises:
        UserError: not a video OpenCV can open (one line).
    """
    import numpy as np
    from mlx_vlm.utils import VideoSampling, load_video
    from PIL import Image

    try:
        array, metadata = load_video(path, VideoSampling(fps=fps, max_frames=max_frames))
    except (ValueError, OSError) as error:
        raise UserError(
            f"{path!r} is not a video this machine can read (OpenCV: {error}): convert it to an .mp4"
        ) from error
    timestamps = tuple(round(value, 2) for value in metadata.timestamps)
    pictures = [Image.fromarray(np.transpose(frame, (1, 2, 0))) for frame in array]
    return array, pictures, timestamps, float(metadata.sampled_fps or fps)
