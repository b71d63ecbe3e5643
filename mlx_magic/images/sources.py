"""Image sources named in a cell, turned into RGB PIL images with a caption.

``%%mlx_vision -i SRC`` lets a user name images the way they think of them: a
variable (PIL image, numpy array, bytes, matplotlib figure, IPython Image,
Path), an earlier output (``_``, ``_3``, ``Out[3]``), a ``data:`` URI, an
http(s) URL, or a file path or glob. :func:`load_images` resolves each one,
in that order, to a :class:`LoadedImage`; anything that goes wrong becomes an
:class:`ImageSourceError` with one line naming the source.

This module reads the user namespace as a plain mapping and knows nothing
else of IPython, and nothing of MLX. What it finds goes to
:mod:`~mlx_magic.images.fetch` (URLs) and :mod:`~mlx_magic.images.decoding`
(bytes and files, through the :mod:`~mlx_magic.images.cache`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import glob
import hashlib
import io
import os
import re
import stat as stat_module
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from PIL import Image

from mlx_magic.errors import ImageSourceError, one_line
from mlx_magic.images.cache import DecodedImageCache
from mlx_magic.images.decoding import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    check_pixels,
    decode_cached,
    finish,
    short_source,
)
from mlx_magic.images.fetch import fetch

__all__ = ["DEFAULT_MAX_PIXELS", "LoadedImage", "load_images"]

_GLOB_CHARS = ("*", "?", "[")
# hashlib.file_digest (3.11+) hashes a file in chunks, in constant memory.
_FILE_DIGEST = getattr(hashlib, "file_digest", None)
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

    scheme = _scheme(source, source)
    if scheme in ("http", "https"):
        return [_from_url(source, source, options)]
    # One-letter "schemes" are Windows drive letters, not URLs.
    if len(scheme) > 1 and ("://" in source or scheme in _NON_HTTP_SCHEMES):
        raise ImageSourceError(
            f"{short_source(source)!r}: only http:// and https:// URLs are fetched", source
        )

    return _from_path_source(source, namespace, options)


def _scheme(source: str, url: str) -> str:
    """The scheme of ``url``, lowercase ("" for none)."""
    try:
        return urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as error:  # "http://[::1/x.png": a bracket never closed
        raise ImageSourceError(f"{short_source(url)!r}: {one_line(error)}", source) from None


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
    if match is None:  # _load_source sends only output references here
        raise ImageSourceError(f"{source!r} is not an output reference", source)
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
        check_pixels(source, value.size, options.max_pixels)
        try:
            value.load()
        except Exception as error:  # e.g. a closed or truncated lazily opened image
            raise ImageSourceError(
                f"{source!r}: cannot read the image: {one_line(error)}", source
            ) from error
        loaded = finish(source, value, options.max_pixels)
        # A region cut by ``Box.crop()`` remembers the image it came from.
        context = getattr(value, "mlx_magic_region", None)
        return dataclasses.replace(loaded, context=context) if context else loaded

    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return finish(source, _array_to_image(source, value, numpy), options.max_pixels)

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
        if _scheme(source, url) not in ("http", "https"):
            raise ImageSourceError(
                f"{source!r} points at {short_source(url)!r}: only http:// and https:// URLs are fetched",
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
        raise ImageSourceError(
            f"{short_source(source)!r}: data URI has no ',' before its data", source
        )
    params = [part.strip().lower() for part in header.split(";")]
    media_type = params[0] or "text/plain"  # RFC 2397's default
    if not media_type.startswith("image/"):
        raise ImageSourceError(
            f"{short_source(source)!r}: data URI is {media_type}, not an image/* type", source
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
            f"{short_source(source)!r}: invalid base64 data: {one_line(error)}", source
        ) from error
    return _from_encoded(source, data, options, what=media_type)


def _from_url(source: str, url: str, options: _Options) -> LoadedImage:
    data, content_type = fetch(source, url, options.max_bytes, options.url_timeout_s)
    return _from_encoded(source, data, options, what=content_type)


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
        # Only regular files: opening a named pipe or a device to read it
        # would block the cell for ever (or read without end).
        if not stat_module.S_ISREG(os.stat(path).st_mode):
            raise ImageSourceError(
                f"{source!r} is not a regular file (a pipe, socket or device): "
                "save the image to a file first",
                source,
            )
        with open(path, "rb") as file:
            # Keyed by what the file holds, not by its name or mtime: a figure
            # saved again under the same name (same size, same second) is new.
            digest = _FILE_DIGEST(file, "sha256") if _FILE_DIGEST else None
            if digest is None:
                data = file.read()
                digest = hashlib.sha256(data)
            file.seek(0)
            key = "sha256:" + digest.hexdigest()
            return decode_cached(source, key, file, options.max_pixels, options.cache)
    except FileNotFoundError as error:
        raise ImageSourceError(f"file not found: {source!r}", source) from error
    except OSError as error:  # permissions, broken links, I/O errors
        raise ImageSourceError(
            f"cannot read {source!r}: {error.strerror or one_line(error)}", source
        ) from error


def _from_encoded(source: str, data: bytes, options: _Options, what: str = "") -> LoadedImage:
    """Encoded image file bytes, from memory or the network."""
    key = "sha256:" + hashlib.sha256(data).hexdigest()
    return decode_cached(source, key, io.BytesIO(data), options.max_pixels, options.cache, what)
