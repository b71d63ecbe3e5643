"""The video a ``%%mlx_vision -v SRC`` cell names: a file, or frames in a variable.

A file is only checked here (it exists, it is a file); the runtime reads and
samples it with mlx-vlm's own reader (OpenCV), so no MLX or video decoder is
needed in the kernel. Frames in a variable (a list of PIL images or arrays,
or a ``T × H × W × 3`` array) are sampled here, evenly, to ``max_frames``,
each turned into an RGB image exactly as ``-i`` would.
"""

from __future__ import annotations

import os
import stat as stat_module
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from mlx_magic.errors import ImageSourceError
from mlx_magic.images.sources import load_images

#: Most frames one cell may send (each frame pair is a few hundred tokens).
MAX_FRAMES_LIMIT = 128


@dataclass(frozen=True)
class VideoSource:
    """A video to send: a file for the runtime to read, or sampled frames."""

    source: str
    path: Optional[str] = None
    frames: tuple = ()


def load_video_source(source: str, namespace: Mapping[str, Any], max_frames: int) -> VideoSource:
    """Resolve ``-v SRC``: a variable holding frames, else a video file.

    Raises:
        ImageSourceError: nothing of that name, or frames that are not images (one line).
    """
    if source.isidentifier() and source in namespace:
        return VideoSource(source, frames=_frames_of(source, namespace[source], max_frames))
    path = os.path.expanduser(source)
    if not os.path.exists(path):
        raise ImageSourceError(f"no variable or video file named {source!r}", source)
    if not stat_module.S_ISREG(os.stat(path).st_mode):
        raise ImageSourceError(f"{source!r} is not a video file", source)
    if not _looks_like_video(path):
        # Checked here: the runtime's reader (OpenCV, libav) answers a text,
        # empty or zero-filled file with lines of its own on stderr.
        raise ImageSourceError(
            f"{source!r} is not a video this machine can read (no MP4, MOV, WebM, MKV, AVI, "
            "MPEG, FLV or Ogg header): pass a video file, or its frames in a variable",
            source,
        )
    return VideoSource(source, path=os.path.abspath(path))


def _looks_like_video(path: str) -> bool:
    """Whether the file starts as a video container or stream does."""
    try:
        with open(path, "rb") as file:
            head = file.read(376)
    except OSError:
        return False
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")  # MP4, MOV, 3GP
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska, WebM
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        # A start code: MPEG program and video streams, H.264 / H.265 streams
        or head.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
        or (len(head) > 188 and head[0] == head[188] == 0x47)  # MPEG transport stream
        or head.startswith((b"FLV", b"OggS"))
    )


def _frames_of(source: str, value: Any, max_frames: int) -> tuple:
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.ndim != 4 or value.shape[-1] not in (1, 3, 4):
            raise ImageSourceError(
                f"{source!r}: an array of shape {tuple(value.shape)} is not a video "
                "(expected T×H×W×3 frames)",
                source,
            )
        frames = list(value)
    elif isinstance(value, (list, tuple)):
        frames = list(value)
    else:
        raise ImageSourceError(
            f"{source!r} is a {type(value).__name__}, not a video: pass a file, a list of "
            "frames (PIL images or arrays) or a T×H×W×3 array",
            source,
        )
    if len(frames) < 2:
        raise ImageSourceError(f"{source!r} has {len(frames)} frame(s); a video needs 2", source)
    chosen = _evenly(len(frames), max_frames)
    loaded = []
    for index in chosen:
        name = f"{source}_frame{index}"  # an identifier: looked up as a variable
        try:
            (image,) = load_images([name], {name: frames[index]})
        except ImageSourceError as error:
            raise ImageSourceError(str(error), source) from error
        loaded.append(image.image)
    return tuple(loaded)


def _evenly(count: int, most: int) -> list[int]:
    """``most`` indices spread evenly over ``count``, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})
