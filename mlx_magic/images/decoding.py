"""Decoding image files: the pixel limit checked from the header, every pixel
read, EXIF orientation applied, RGB out (transparency on white, deep greys
scaled), and a hash of the result.

Untrusted bytes (a URL, a user's file) fail here as one
:class:`~mlx_magic.errors.ImageSourceError` line naming the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, cast

from PIL import Image, ImageOps, UnidentifiedImageError

from mlx_magic.errors import ImageSourceError, one_line
from mlx_magic.images.cache import Decoded, DecodedImageCache

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width × height) decoded by default: 50 megapixels, well
above any camera photo and below Pillow's own bomb limit (~89 megapixels)."""

ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
"""Pillow modes with an alpha channel."""


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for a vision model, and where it came from.

    Equality and hashing use ``source``, ``original_size`` and ``cache_key``
    (PIL images are unhashable; an equal ``cache_key`` means equal pixels).
    """

    image: Image.Image = field(compare=False)
    """RGB, EXIF orientation applied. Treat it as read-only."""
    source: str
    """What the user wrote ("photo.jpg", "fig", "Out[3]"); for a glob, the matched file."""
    original_size: tuple[int, int]
    """(width, height) as stored, before EXIF rotation and RGB conversion."""
    cache_key: str
    """sha256 of the size and RGB bytes: equal for equal pixels, whatever the source."""
    context: Optional[tuple] = field(default=None, compare=False)
    """For a region cut from a larger image: ``(whole image, (x1, y1, x2, y2))``,
    so previews can show where the region lies."""

    @property
    def caption(self) -> str:
        """``"photo.jpg · 640×480"``: short source and the size the model sees."""
        width, height = self.image.size
        return f"{short_source(self.source)} · {width}×{height}"


def decode_cached(
    source: str,
    key: str,
    file: Any,
    max_pixels: int,
    cache: Optional[DecodedImageCache],
    what: str = "",
) -> LoadedImage:
    """:func:`decode`, through ``cache`` under ``key`` when there is one."""
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        # The limit may have been lowered since this image was cached.
        check_pixels(source, hit.original_size, max_pixels)
        return LoadedImage(hit.image, source, hit.original_size, hit.content_key)
    loaded = decode(source, file, max_pixels, what)
    if cache is not None:
        cache.put(key, Decoded(loaded.image, loaded.original_size, loaded.cache_key))
    return loaded


def decode(source: str, file: Any, max_pixels: int, what: str = "") -> LoadedImage:
    """Fully decode an image file: header, size limit, then every pixel."""
    got = f" (got {what})" if what and not what.startswith("image/") else ""
    try:
        with _quiet_about_corrupt_exif(), Image.open(file) as image:
            # Checked from the header, before a single pixel is decompressed.
            check_pixels(source, image.size, max_pixels)
            # Image.open is lazy; load() decodes everything so a truncated
            # file fails here rather than later inside the model.
            image.load()
            return finish(source, image, max_pixels)
    except ImageSourceError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageSourceError(
            f"{short_source(source)!r}: refused as a decompression bomb: {one_line(error)}", source
        ) from error
    except UnidentifiedImageError as error:
        raise ImageSourceError(
            f"{short_source(source)!r} is not an image Pillow can read{got}", source
        ) from error
    except Exception as error:
        # Untrusted bytes: Pillow's decoders raise OSError, SyntaxError,
        # ValueError, struct.error, zlib.error... all mean "corrupt image".
        raise ImageSourceError(
            f"{short_source(source)!r}: corrupt or truncated image{got}: "
            f"{one_line(error) or type(error).__name__}",
            source,
        ) from error


def check_pixels(source: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width == 0 or height == 0:
        raise ImageSourceError(
            f"{short_source(source)!r} is empty ({width}×{height} pixels)", source
        )
    if width * height > max_pixels:
        raise ImageSourceError(
            f"{short_source(source)!r} is {width}×{height} = {width * height / 1e6:.1f} megapixels, "
            f"more than the {max_pixels / 1e6:g}-megapixel limit",
            source,
        )


def finish(source: str, image: Image.Image, max_pixels: int) -> LoadedImage:
    """Upright RGB copy of a loaded image, with its content hash."""
    original_size = image.size
    check_pixels(source, original_size, max_pixels)
    try:
        # Returns a copy even when there is nothing to rotate, so the caller's
        # own image object is never handed back or changed.
        with _quiet_about_corrupt_exif():
            upright = ImageOps.exif_transpose(image)
        rgb = _to_rgb(upright)
    except Exception as error:  # odd modes (LAB...) or broken EXIF
        raise ImageSourceError(
            f"{short_source(source)!r}: cannot convert {image.mode} image to RGB: {one_line(error)}",
            source,
        ) from error
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return LoadedImage(rgb, source, original_size, digest.hexdigest())


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white and deep greys scaled."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _deep_grey_to_l(image).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        # Dropping alpha would show whatever colour hides under transparent
        # pixels (often black); white matches how notebooks display them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return image.convert("RGB")


def _deep_grey_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey to 8-bit by scaling.

    Pillow's own conversion clips at 255, which turns a 16-bit PNG nearly white.
    """
    values = image.convert("F")
    # One band: getextrema() gives (low, high), not a pair for each band.
    low, high = cast(tuple[float, float], values.getextrema())
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        scale = 255.0
    elif high <= 255:
        scale = 1.0
    elif high <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / high
    return values.point(lambda value: value * scale + 0.5).convert("L")


def short_source(source: str, limit: int = 60) -> str:
    """A source short enough for a caption or an error line."""
    source = one_line(source)
    if len(source) <= limit:
        return source
    if source[:5].lower() == "data:":
        # The payload is noise to a reader; the media type says what it is.
        return source.partition(",")[0][:limit] + ",…"
    # Keep the end: for paths and URLs, the file name is what tells images apart.
    return source[: limit // 3] + "…" + source[-(limit - limit // 3 - 1) :]


@contextlib.contextmanager
def _quiet_about_corrupt_exif() -> Iterator[None]:
    """A corrupt EXIF block only costs the rotation it would give: Pillow's
    "Corrupt EXIF data" warning would reach the cell for nothing to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
        yield
