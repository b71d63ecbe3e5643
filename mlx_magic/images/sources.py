"""Image sources named in a cell, turned into RGB PIL images with a caption.

``%%mlx_vision -i SRC`` lets a user name images the way they think of them: a
variable (PIL image, numpy array, bytes, matplotlib figure, IPython Image,
Path), an earlier output (``_``, ``_3``, ``Out[3]``), a ``data:`` URI, an
http(s) URL, or a file path or glob. :func:`load_images` resolves each one,
in that order, to a :class:`LoadedImage`; anything that goes wrong becomes an
:class:`ImageSourceError` with one line naming the source.

This module reads the user namespace as a plain mapping and knows nothing
else of IPython, and nothing of MLX.
"""

from __future__ import annotations

import base64
import binascii
import glob
import hashlib
import io
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, Mapping, Optional

from PIL import Image, ImageOps, UnidentifiedImageError

from mlx_magic.errors import ImageSourceError, one_line

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width × height) decoded by default: 50 megapixels, well
above any camera photo and below Pillow's own bomb limit (~89 megapixels)."""

_GLOB_CHARS = ("*", "?", "[")
_OUTPUT_REF = re.compile(r"^(?:_(\d+)|Out\[(\d+)\])$")
_LAST_OUTPUTS = {
    "_": "the last output",
    "__": "the output before last",
    "___": "the third-last output",
}
# Schemes that are plainly not file names even without "//" (``javascript:x``,
# ``file:/etc/passwd``); anything else with "://" is a URL too.
_NON_HTTP_SCHEMES = {
    "file",
    "ftp",
    "ftps",
    "sftp",
    "javascript",
    "vbscript",
    "blob",
    "about",
    "mailto",
    "ws",
    "wss",
    "s3",
    "gs",
}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_CHUNK = 64 * 1024


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

    @property
    def caption(self) -> str:
        """``"photo.jpg · 640×480"``: short source and the size the model sees."""
        width, height = self.image.size
        return f"{_short(self.source)} · {width}×{height}"


@dataclass(frozen=True)
class _Decoded:
    """What the decode cache keeps: enough to rebuild a LoadedImage."""

    image: Image.Image
    original_size: tuple[int, int]
    content_key: str


class DecodedImageCache:
    """A bounded LRU cache of decoded images, so re-reading a source skips decoding.

    Keys are chosen by :func:`load_images`:

    * files: ``file:<real path>:<device>:<inode>:<size>:<mtime_ns>``. Editing or
      replacing the file changes the key; the one blind spot is rewriting it in
      place with the same size within the file system's mtime granularity
      (1 s on HFS+, nanoseconds on APFS and ext4).
    * encoded bytes (URLs, ``data:`` URIs, bytes variables, IPython Images,
      figures): ``sha256:<hash of the encoded bytes>``. A URL alone is not a
      safe key (the server may change what it serves), so URLs are still
      downloaded every time; only decoding is skipped.

    The cache holds its own copies: callers get a fresh copy on every hit and
    every store, so drawing on a returned image cannot corrupt the cache.

    Args:
        max_entries: Most images kept.
        max_bytes: Most bytes of pixels kept (width × height × 3 per image).
            An image larger than this on its own is not cached.
    """

    def __init__(self, max_entries: int = 32, max_bytes: int = 512 * 1024**2):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._entries: "OrderedDict[str, _Decoded]" = OrderedDict()
        self._bytes = 0
        # The magic may load images from a worker thread while the user's
        # cell runs another load; the lock keeps the counters and order sane.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Optional[_Decoded]:
        """The cached decode for ``key`` (a copy), counted as a hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return _Decoded(entry.image.copy(), entry.original_size, entry.content_key)

    def put(self, key: str, decoded: _Decoded) -> None:
        """Keep a copy of ``decoded`` under ``key``, evicting the least recently used."""
        size = _pixel_bytes(decoded.image)
        if size > self.max_bytes:
            return
        stored = _Decoded(decoded.image.copy(), decoded.original_size, decoded.content_key)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= _pixel_bytes(old.image)
            self._entries[key] = stored
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= _pixel_bytes(evicted.image)
                self.evictions += 1

    def clear(self) -> None:
        """Drop every image (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict:
        """Counters and sizes: entries, bytes, hits, misses, evictions and the bounds."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
            }


@dataclass(frozen=True)
class _Options:
    max_bytes: int
    url_timeout_s: float
    max_pixels: int
    cache: Optional[DecodedImageCache]


def load_images(
    sources: list[str],
    namespace: Mapping[str, object],
    *,
    max_bytes: int = 20_000_000,
    url_timeout_s: float = 10.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache: Optional[DecodedImageCache] = None,
) -> list[LoadedImage]:
    """Resolve every source to RGB images; a glob may expand to several (sorted).

    Each source is tried as, in order: a variable in ``namespace`` (a str
    variable is not dereferenced); an earlier output (``_``, ``__``, ``___``,
    ``_N``, ``Out[N]``); a ``data:`` URI; an http(s) URL; a file path or glob
    (``~`` expanded). Multi-frame images (GIF, TIFF) give their first frame.

    Args:
        sources: What the user wrote, one source per item.
        namespace: The user namespace (IPython's ``user_ns``).
        max_bytes: Most bytes downloaded from one URL.
        url_timeout_s: Seconds allowed for one URL download, all of it.
        max_pixels: Largest width × height accepted, whatever the source.
        cache: Decoded images to reuse for files and encoded bytes; see
            :class:`DecodedImageCache` for what is keyed how.

    Returns:
        The images in source order, a glob's matches in sorted order.

    Raises:
        ImageSourceError: The first source that cannot be loaded, in one line.
        TypeError: ``sources`` is a single string instead of a list.
    """
    if isinstance(sources, str):
        # Iterating a str would try every character as a source.
        raise TypeError("sources must be a list of strings, not a str")
    options = _Options(max_bytes, url_timeout_s, max_pixels, cache)
    loaded: list[LoadedImage] = []
    for source in sources:
        loaded.extend(_load_source(source, namespace, options))
    return loaded


def thumbnail(image: Image.Image, max_side: int = 256) -> Image.Image:
    """A copy scaled so its longest side is at most ``max_side``, aspect kept.

    Args:
        image: Any PIL image; it is not modified.
        max_side: Longest side of the result, in pixels. Smaller images are
            copied, never enlarged.

    Returns:
        A new image.

    Raises:
        ValueError: ``max_side`` is below 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return small


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG, e.g. for a preview in a notebook.

    Args:
        image: Any PIL image; modes PNG cannot store are converted to RGB(A).

    Returns:
        The PNG file bytes.
    """
    if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGBA" if image.mode in _ALPHA_MODES else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- resolving a source ----------------------------------------------------


def _load_source(
    source: str, namespace: Mapping[str, object], options: _Options
) -> list[LoadedImage]:
    """One source, tried as each kind in turn (see :func:`load_images`)."""
    if not isinstance(source, str) or not source.strip():
        raise ImageSourceError(f"empty image source {source!r}", source=str(source))

    if _OUTPUT_REF.match(source) or source in _LAST_OUTPUTS:
        return [_from_object(source, _lookup_output(source, namespace), options)]

    if source.isidentifier() and source in namespace:
        value = namespace[source]
        # A str variable is not dereferenced: in a cell the source text is the
        # path or URL, and `{name}` already expands variables in magic lines.
        if not isinstance(value, str):
            return [_from_object(source, value, options)]

    if source[:5].lower() == "data:":
        return [_from_data_uri(source, options)]

    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return [_from_url(source, source, options)]
    # One-letter "schemes" are Windows drive letters, not URLs.
    if len(scheme) > 1 and ("://" in source or scheme in _NON_HTTP_SCHEMES):
        raise ImageSourceError(
            f"{_short(source)!r}: only http:// and https:// URLs are fetched", source
        )

    return _from_path_source(source, namespace, options)


def _lookup_output(source: str, namespace: Mapping[str, object]) -> object:
    """The value of an output reference, or an error saying there is none."""
    if source in _LAST_OUTPUTS:
        value = namespace.get(source, "")
        # IPython starts `_`, `__` and `___` as "" until a cell shows a result.
        if isinstance(value, str) and value == "":
            raise ImageSourceError(
                f"no output for {source!r} yet ({_LAST_OUTPUTS[source]})", source
            )
        return value

    match = _OUTPUT_REF.match(source)
    number = int(match.group(1) or match.group(2))
    outputs = namespace.get("Out")
    if isinstance(outputs, Mapping) and number in outputs:
        return outputs[number]
    if f"_{number}" in namespace:
        return namespace[f"_{number}"]
    raise ImageSourceError(
        f"no output {number}: cell {number} did not show a result (Out[{number}] / _{number})",
        source,
    )


def _from_object(source: str, value: Any, options: _Options) -> LoadedImage:
    """A namespace value (variable or earlier output) as an image."""
    if isinstance(value, Image.Image):
        # Before load(): a lazily opened image has not been decompressed yet.
        _check_pixels(source, value.size, options.max_pixels)
        try:
            value.load()
        except Exception as error:  # e.g. a closed or truncated lazily opened image
            raise ImageSourceError(
                f"{source!r}: cannot read the image: {one_line(error)}", source
            ) from error
        return _finish(source, value, options)

    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return _finish(source, _array_to_image(source, value, numpy), options)

    if isinstance(value, (bytes, bytearray, memoryview)):
        return _from_encoded(source, bytes(value), options)

    if isinstance(value, os.PathLike):
        # A Path is an explicit file name: no glob expansion.
        return _from_file(source, os.fspath(value), options)

    ipython_display = sys.modules.get("IPython.core.display")
    ipython_image = getattr(ipython_display, "Image", None)
    if ipython_image is not None and isinstance(value, ipython_image):
        return _from_ipython_image(source, value, options)

    # Duck-typed so matplotlib is never imported here: Figure and SubFigure
    # have both, Axes has neither.
    if callable(getattr(value, "savefig", None)) and hasattr(value, "dpi"):
        return _from_figure(source, value, options)

    kind = type(value).__name__
    raise ImageSourceError(
        f"{source!r} is of type {kind}, not an image (expected a PIL image, numpy array, "
        f"bytes, matplotlib figure, IPython Image or Path)",
        source,
    )


def _array_to_image(source: str, array: Any, numpy: Any) -> Image.Image:
    """A grey, RGB or RGBA array (uint8, or float in [0, 1]) as a PIL image."""
    shape = tuple(array.shape)
    described = f"shape {shape} dtype {array.dtype}"
    channels_ok = array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))
    if not channels_ok or 0 in shape:
        raise ImageSourceError(
            f"{source!r}: array of {described} is not an image (expected H×W, H×W×3 or H×W×4)",
            source,
        )
    if array.dtype == numpy.uint8:
        pixels = array
    elif numpy.issubdtype(array.dtype, numpy.floating):
        if not bool(numpy.isfinite(array).all()):
            raise ImageSourceError(
                f"{source!r}: float array values must be in [0, 1], found NaN or infinity", source
            )
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageSourceError(
                f"{source!r}: float array values must be in [0, 1], found {low:g} to "
                f"{high:g}; scale it or pass uint8",
                source,
            )
        pixels = numpy.rint(array * 255.0).astype(numpy.uint8)
    else:
        raise ImageSourceError(
            f"{source!r}: array of {described} is not supported; "
            f"use uint8 (0-255) or float (0-1), e.g. arr.astype(np.uint8)",
            source,
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    # uint8 H×W, H×W×3 and H×W×4 arrays map to L, RGB and RGBA by themselves.
    return Image.fromarray(numpy.ascontiguousarray(pixels))


def _from_ipython_image(source: str, value: Any, options: _Options) -> LoadedImage:
    """An ``IPython.display.Image``: its embedded bytes, else its file or URL."""
    data = getattr(value, "data", None)
    if isinstance(data, (bytes, bytearray)):
        return _from_encoded(source, bytes(data), options)
    filename = getattr(value, "filename", None)
    if filename:
        return _from_file(source, filename, options)
    url = getattr(value, "url", None)
    if url:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageSourceError(
                f"{source!r} points at {_short(url)!r}: only http:// and https:// URLs are fetched",
                source,
            )
        return _from_url(source, url, options)
    raise ImageSourceError(f"{source!r} is an IPython Image with no data, file or URL", source)


def _from_figure(source: str, figure: Any, options: _Options) -> LoadedImage:
    """A matplotlib figure rendered to PNG at its own dpi."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi="figure")
    except Exception as error:  # any failure inside the user's plot
        raise ImageSourceError(
            f"{source!r}: could not render the figure: {one_line(error)}", source
        ) from error
    return _from_encoded(source, buffer.getvalue(), options)


def _from_data_uri(source: str, options: _Options) -> LoadedImage:
    """``data:image/png;base64,...`` (percent-encoded data is accepted too)."""
    header, comma, payload = source[5:].partition(",")
    if not comma:
        raise ImageSourceError(f"{_short(source)!r}: data URI has no ',' before its data", source)
    params = [part.strip().lower() for part in header.split(";")]
    media_type = params[0] or "text/plain"  # RFC 2397's default
    if not media_type.startswith("image/"):
        raise ImageSourceError(
            f"{_short(source)!r}: data URI is {media_type}, not an image/* type", source
        )
    try:
        if "base64" in params[1:]:
            text = urllib.parse.unquote(payload)
            text += "=" * (-len(text) % 4)  # tolerate stripped padding
            data = base64.b64decode(text, validate=True)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as error:
        raise ImageSourceError(
            f"{_short(source)!r}: invalid base64 data: {one_line(error)}", source
        ) from error
    return _from_encoded(source, data, options, what=media_type)


def _from_url(source: str, url: str, options: _Options) -> LoadedImage:
    data, content_type = _fetch(source, url, options)
    return _from_encoded(source, data, options, what=content_type)


def _fetch(source: str, url: str, options: _Options) -> tuple[bytes, str]:
    """The body of an http(s) URL, at most ``max_bytes`` and ``url_timeout_s``."""
    name = _short(url)
    opener = urllib.request.build_opener(_HTTPOnlyRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": "mlx_magic"})
    # urlopen's timeout bounds each socket wait, not the whole download; the
    # deadline also stops a server that trickles bytes forever.
    deadline = time.monotonic() + options.url_timeout_s
    try:
        with opener.open(request, timeout=options.url_timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length and length.strip().isdigit() and int(length) > options.max_bytes:
                raise ImageSourceError(
                    f"{name}: {int(length):,} bytes is more than the "
                    f"{options.max_bytes:,}-byte limit",
                    source,
                )
            chunks, received = [], 0
            while received <= options.max_bytes:
                if time.monotonic() > deadline:
                    raise TimeoutError
                # read1 returns what one recv brings; read(n) would wait for
                # all n bytes and let a trickling server outlast the deadline.
                chunk = response.read1(min(_CHUNK, options.max_bytes + 1 - received))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
            if received > options.max_bytes:
                raise ImageSourceError(
                    f"{name}: more than the {options.max_bytes:,}-byte limit", source
                )
            content_type = response.headers.get_content_type() or ""
            return b"".join(chunks), content_type
    except ImageSourceError:
        raise
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection open for its error page
        raise ImageSourceError(f"{name}: HTTP {error.code} {error.reason}", source) from error
    except urllib.error.URLError as error:
        reason = error.reason
        cause = (
            f"timed out after {options.url_timeout_s:g} s"
            if isinstance(reason, TimeoutError)
            else one_line(reason)
        )
        raise ImageSourceError(f"{name}: {cause}", source) from error
    except TimeoutError as error:  # socket.timeout is TimeoutError since 3.10
        raise ImageSourceError(
            f"{name}: timed out after {options.url_timeout_s:g} s", source
        ) from error
    except (OSError, HTTPException, ValueError) as error:
        raise ImageSourceError(
            f"{name}: {one_line(error) or type(error).__name__}", source
        ) from error


class _HTTPOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s); urllib alone would also follow ftp."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise urllib.error.URLError(
                f"redirected to {_short(newurl)!r}; only http:// and https:// are fetched"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _from_path_source(
    source: str, namespace: Mapping[str, object], options: _Options
) -> list[LoadedImage]:
    """A file path or glob; the last resort, so its errors explain the other options."""
    path = os.path.expanduser(source)
    # A literal name wins, so "scan[1].png" works even though "[" is a glob char.
    if any(char in source for char in _GLOB_CHARS) and not os.path.lexists(path):
        matches = sorted(
            match for match in glob.glob(path, recursive=True) if not os.path.isdir(match)
        )
        if not matches:
            raise ImageSourceError(f"{source!r} matches no files", source)
        return [_from_file(match, match, options) for match in matches]

    if not os.path.lexists(path):
        if source.isidentifier():
            if isinstance(namespace.get(source), str):
                raise ImageSourceError(
                    f"no file named {source!r}; the variable {source!r} is a str and is "
                    f"not looked into: write the path itself, or {{{source}}}",
                    source,
                )
            raise ImageSourceError(f"no variable, file or URL named {source!r}", source)
        raise ImageSourceError(f"file not found: {source!r}", source)
    return [_from_file(source, path, options)]


def _from_file(source: str, path: str, options: _Options) -> LoadedImage:
    if os.path.isdir(path):
        raise ImageSourceError(
            f"{source!r} is a directory; name image files, e.g. '{source.rstrip('/')}/*.png'",
            source,
        )
    try:
        with open(path, "rb") as file:
            # fstat on the open file: the key describes exactly what is read.
            stat = os.fstat(file.fileno())
            key = (
                f"file:{os.path.realpath(path)}:{stat.st_dev}:{stat.st_ino}:"
                f"{stat.st_size}:{stat.st_mtime_ns}"
            )
            return _decode_cached(source, key, file, options)
    except FileNotFoundError as error:
        raise ImageSourceError(f"file not found: {source!r}", source) from error
    except OSError as error:  # permissions, broken links, I/O errors
        raise ImageSourceError(
            f"cannot read {source!r}: {error.strerror or one_line(error)}", source
        ) from error


def _from_encoded(source: str, data: bytes, options: _Options, what: str = "") -> LoadedImage:
    """Encoded image file bytes, from memory or the network."""
    key = "sha256:" + hashlib.sha256(data).hexdigest()
    return _decode_cached(source, key, io.BytesIO(data), options, what)


# --- decoding ----------------------------------------------------------------


def _decode_cached(
    source: str, key: str, file: Any, options: _Options, what: str = ""
) -> LoadedImage:
    cache = options.cache
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        # The limit may have been lowered since this image was cached.
        _check_pixels(source, hit.original_size, options.max_pixels)
        return LoadedImage(hit.image, source, hit.original_size, hit.content_key)
    loaded = _decode(source, file, options, what)
    if cache is not None:
        cache.put(key, _Decoded(loaded.image, loaded.original_size, loaded.cache_key))
    return loaded


def _decode(source: str, file: Any, options: _Options, what: str = "") -> LoadedImage:
    """Fully decode an image file: header, size limit, then every pixel."""
    got = f" (got {what})" if what and not what.startswith("image/") else ""
    try:
        with Image.open(file) as image:
            # Checked from the header, before a single pixel is decompressed.
            _check_pixels(source, image.size, options.max_pixels)
            # Image.open is lazy; load() decodes everything so a truncated
            # file fails here rather than later inside the model.
            image.load()
            return _finish(source, image, options)
    except ImageSourceError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageSourceError(
            f"{_short(source)!r}: refused as a decompression bomb: {one_line(error)}", source
        ) from error
    except UnidentifiedImageError as error:
        raise ImageSourceError(
            f"{_short(source)!r} is not an image Pillow can read{got}", source
        ) from error
    except Exception as error:
        # Untrusted bytes: Pillow's decoders raise OSError, SyntaxError,
        # ValueError, struct.error, zlib.error... all mean "corrupt image".
        raise ImageSourceError(
            f"{_short(source)!r}: corrupt or truncated image{got}: "
            f"{one_line(error) or type(error).__name__}",
            source,
        ) from error


def _check_pixels(source: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageSourceError(
            f"{_short(source)!r} is {width}×{height} = {width * height / 1e6:.1f} megapixels, "
            f"more than the {max_pixels / 1e6:g}-megapixel limit",
            source,
        )


def _finish(source: str, image: Image.Image, options: _Options) -> LoadedImage:
    """Upright RGB copy of a loaded image, with its content hash."""
    original_size = image.size
    _check_pixels(source, original_size, options.max_pixels)
    try:
        # Returns a copy even when there is nothing to rotate, so the caller's
        # own image object is never handed back or changed.
        upright = ImageOps.exif_transpose(image)
        rgb = _to_rgb(upright)
    except Exception as error:  # odd modes (LAB...) or broken EXIF
        raise ImageSourceError(
            f"{_short(source)!r}: cannot convert {image.mode} image to RGB: {one_line(error)}",
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
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
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
    low, high = values.getextrema()
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        scale = 255.0
    elif high <= 255:
        scale = 1.0
    elif high <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / high
    return values.point(lambda value: value * scale + 0.5).convert("L")


# --- small helpers -------------------------------------------------------------


def _pixel_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


def _short(source: str, limit: int = 60) -> str:
    """A source short enough for a caption or an error line."""
    source = one_line(source)
    if len(source) <= limit:
        return source
    if source[:5].lower() == "data:":
        # The payload is noise to a reader; the media type says what it is.
        return source.partition(",")[0][:limit] + ",…"
    # Keep the end: for paths and URLs, the file name is what tells images apart.
    return source[: limit // 3] + "…" + source[-(limit - limit // 3 - 1) :]
