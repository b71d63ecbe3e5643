"""Framing and a JSON codec for the worker-process runtime's pipe protocol.

The kernel (:mod:`mlx_magic.runtime.process.worker_process`) and the worker
(:mod:`mlx_magic.runtime.process.server`) speak JSON-RPC 2.0 over the worker's stdin and
stdout. This module knows nothing of processes: it turns messages into bytes
and back, and protocol values (:mod:`mlx_magic.vocabulary.values`) into JSON and back.
It never imports MLX, so the kernel side stays free of it.

Framing
-------

One frame per line::

    MLXRPC1 {"jsonrpc":"2.0","method":"events","params":{...}}\\n

the 8 ASCII bytes ``MLXRPC1 `` (the magic, with a version digit), one
JSON-RPC 2.0 message as compact JSON with every non-ASCII character escaped
(so a frame is pure ASCII and JSON's own escaping guarantees there is no
newline inside it), then ``\\n``. A reader:

* skips bytes before the magic on a line and whole lines without it (they are
  reported as garbage, never parsed), so stray output cannot be mistaken for
  a message and cannot swallow the next one;
* skips a frame whose JSON does not parse, or that is longer than
  :data:`MAX_FRAME_BYTES`, and goes on with the next line.

The worker also keeps stray output off the pipe in the first place: it moves
the protocol to private copies of its stdin and stdout before importing
anything, and points file descriptor 1 (and so ``print`` and C libraries)
at stderr.

Codec
-----

:func:`encode` turns protocol dataclasses into JSON objects tagged with
``"__type__": "<ClassName>"`` (only the classes in :data:`_DATACLASSES` are
known, so decoding never builds an arbitrary class); tuples (the common
case: token ids, history, per-token details) become JSON arrays and lists
become ``{"__type__": "list", "items": [...]}``, so both come back as they
were; a dict that has a ``__type__`` key of its own is wrapped as
``{"__type__": "dict", "items": {...}}``; numpy arrays (vectors) become
``{"__type__": "array", "dtype", "shape", "data": <base64 bytes>}``; PIL images become
``{"__type__": "image", "png": <base64 PNG>}``; exceptions become
``{"__type__": "exception", "type", "message", "traceback"}`` and decode to
the class of :mod:`mlx_magic.errors` of that name (a user's mistake in the
worker is the same mistake in the kernel), or else :class:`RPCError`.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import threading
import traceback
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, get_args

from mlx_magic import errors
from mlx_magic.errors import GenerationFailed, MLXMagicError, ModelLoadError, RPCError
from mlx_magic.vocabulary.attention import AttentionMap, AttentionRequest, ImagePatches
from mlx_magic.vocabulary.caching import KVCacheSettings
from mlx_magic.vocabulary.embedding import Embeddings, EmbedRequest
from mlx_magic.vocabulary.lens import LensCell, LensGrid, LensRequest
from mlx_magic.vocabulary.masks import BoxPrompt, Mask, Segmentation, SegmentRequest
from mlx_magic.vocabulary.tools import ProposedCall, ToolUse
from mlx_magic.vocabulary.values import (
    Event,
    GenerationRequest,
    GenerationStats,
    MemorySample,
    ModelInfo,
    ModelSpec,
    PrefixCacheSettings,
    RuntimeStatus,
    SamplingParams,
)

if TYPE_CHECKING:
    from PIL import Image

MAGIC = b"MLXRPC1 "
#: The longest frame a reader accepts (a 1 MB prompt is a 1 MB frame; a few
#: images are a few MB of base64).
MAX_FRAME_BYTES = 256 << 20

JSONRPC = "2.0"

# JSON-RPC 2.0 error codes: the pre-defined ones, and two of the range the
# spec leaves to implementations (-32000 to -32099).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000
MODEL_LOAD_ERROR = -32001


# ---- framing ----------------------------------------------------------------


def frame(message: dict) -> bytes:
    """``message`` as one frame (magic, ASCII JSON, newline)."""
    text = json.dumps(message, ensure_ascii=True, separators=(",", ":"))
    return MAGIC + text.encode("ascii") + b"\n"


class FrameWriter:
    """Writes frames to a binary stream; safe to share between threads."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._lock = threading.Lock()
        self.frames = 0
        self.bytes = 0

    def send(self, message: dict) -> int:
        """Write one message and flush; returns the frame's size in bytes.

        Raises:
            OSError: the other end is gone (``BrokenPipeError``) or the stream
                is closed.
        """
        data = frame(message)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()
            self.frames += 1
            self.bytes += len(data)
        return len(data)


class FrameReader:
    """Reads frames from a binary stream, skipping anything that is not one.

    Args:
        stream: a buffered binary stream (``readline`` must work on it).
        on_garbage: called with a short description of every skipped piece
            (stray bytes, a broken frame); ``None`` ignores them.
    """

    def __init__(self, stream: IO[bytes], on_garbage: Optional[Callable[[str], None]] = None):
        self._stream = stream
        self._on_garbage = on_garbage
        self.frames = 0
        self.bytes = 0
        self.garbage = 0

    def read(self) -> Optional[dict]:
        """The next message, or ``None`` at the end of the stream."""
        limit = MAX_FRAME_BYTES + len(MAGIC) + 1
        while True:
            line = self._stream.readline(limit)
            if not line:
                return None
            if not line.endswith(b"\n") and len(line) >= limit:
                self._skip_rest_of_line(limit)
                self._garbage(f"a frame longer than {MAX_FRAME_BYTES} bytes")
                continue
            start = line.find(MAGIC)
            if start < 0:
                self._garbage(_preview(line))
                continue
            if start > 0:
                self._garbage(_preview(line[:start]))
            try:
                message = json.loads(line[start + len(MAGIC) :])
            except ValueError as error:
                self._garbage(f"a frame that is not JSON ({error})")
                continue
            if not isinstance(message, dict):
                self._garbage("a frame that is not a JSON object")
                continue
            self.frames += 1
            self.bytes += len(line) - start
            return message

    def _skip_rest_of_line(self, limit: int) -> None:
        while True:
            chunk = self._stream.readline(limit)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _garbage(self, what: str) -> None:
        self.garbage += 1
        if self._on_garbage is not None:
            self._on_garbage(what)


def _preview(data: bytes) -> str:
    text = data.decode("utf-8", "replace").rstrip("\n")
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


# ---- JSON-RPC 2.0 messages --------------------------------------------------


def request(id_: int, method: str, params: Any = None) -> dict:
    message = {"jsonrpc": JSONRPC, "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict:
    message = {"jsonrpc": JSONRPC, "method": method}
    if params is not None:
        message["params"] = params
    return message


def result(id_: Any, value: Any) -> dict:
    return {"jsonrpc": JSONRPC, "id": id_, "result": value}


def error(id_: Any, code: int, message: str, data: Any = None) -> dict:
    body = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": JSONRPC, "id": id_, "error": body}


def error_for_exception(id_: Any, exc: BaseException) -> dict:
    """A JSON-RPC error response carrying ``exc`` (see :func:`exception_from_error`)."""
    code = MODEL_LOAD_ERROR if isinstance(exc, ModelLoadError) else APPLICATION_ERROR
    return error(id_, code, str(exc) or type(exc).__name__, encode_exception(exc))


def exception_from_error(body: dict) -> Exception:
    """The exception a JSON-RPC error object stands for."""
    data = body.get("data")
    if isinstance(data, dict) and data.get("__type__") == "exception":
        return decode_exception(data)
    message = str(body.get("message", "unknown error"))
    if body.get("code") == MODEL_LOAD_ERROR:
        return ModelLoadError(message)
    return RPCError(f"JSON-RPC error {body.get('code')}", message)


def kind_of(message: dict) -> str:
    """``"request"``, ``"notification"``, ``"response"`` or ``"invalid"``."""
    if message.get("jsonrpc") != JSONRPC:
        return "invalid"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "invalid"
        return "request" if "id" in message else "notification"
    if "id" in message and ("result" in message or "error" in message):
        return "response"
    return "invalid"


# ---- codec --------------------------------------------------------------------

_DATACLASSES = {
    cls.__name__: cls
    for cls in (
        ModelSpec,
        SamplingParams,
        PrefixCacheSettings,
        KVCacheSettings,
        GenerationRequest,
        ModelInfo,
        MemorySample,
        RuntimeStatus,
        GenerationStats,
        LensRequest,
        LensGrid,
        LensCell,
        AttentionRequest,
        AttentionMap,
        ImagePatches,
        SegmentRequest,
        BoxPrompt,
        Segmentation,
        Mask,
        EmbedRequest,
        Embeddings,
        ToolUse,
        ProposedCall,
        *get_args(Event),  # every event the runtime sends
    )
}
_TYPE = "__type__"


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data (see the module's docstring).

    Raises:
        TypeError: a value of a type the protocol does not carry.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _DATACLASSES.get(name) is not type(value):
            raise TypeError(f"{name} is not a protocol value")
        out = {_TYPE: name}
        for field in dataclasses.fields(value):
            out[field.name] = encode(getattr(value, field.name))
        return out
    if isinstance(value, tuple):
        return [encode(item) for item in value]
    if isinstance(value, list):
        return {_TYPE: "list", "items": [encode(item) for item in value]}
    if isinstance(value, dict):
        out = {str(key): encode(item) for key, item in value.items()}
        if _TYPE in out:
            return {_TYPE: "dict", "items": out}
        return out
    if isinstance(value, BaseException):
        return encode_exception(value)
    if _is_pil_image(value):
        return {_TYPE: "image", "png": _png_base64(value)}
    if type(value).__name__ == "ndarray":  # numpy: vectors
        return {
            _TYPE: "array",
            "dtype": str(value.dtype),
            "shape": list(value.shape),
            "data": base64.b64encode(value.tobytes()).decode("ascii"),
        }
    if hasattr(value, "item") and callable(value.item):  # numpy / mlx scalars
        return encode(value.item())
    raise TypeError(f"cannot send a {type(value).__name__} to or from the worker")


def decode(data: Any) -> Any:
    """The value :func:`encode` made ``data`` from.

    Raises:
        ValueError: an unknown ``__type__`` tag, or fields that do not fit.
    """
    if isinstance(data, list):
        return tuple(decode(item) for item in data)
    if not isinstance(data, dict):
        return data
    tag = data.get(_TYPE)
    if tag is None:
        return {key: decode(item) for key, item in data.items()}
    if tag == "list":
        return [decode(item) for item in data["items"]]
    if tag == "dict":
        return {key: decode(item) for key, item in data["items"].items()}
    if tag == "image":
        return _image_from_png_base64(data["png"])
    if tag == "array":
        import numpy as np

        flat = np.frombuffer(base64.b64decode(data["data"]), dtype=np.dtype(data["dtype"]))
        return flat.reshape([int(size) for size in data["shape"]]).copy()
    if tag == "exception":
        return decode_exception(data)
    cls = _DATACLASSES.get(tag)
    if cls is None:
        raise ValueError(f"unknown value type {tag!r}")
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        kwargs[field.name] = decode(data[field.name])
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"bad {tag}: {error}") from None


def encode_exception(exc: BaseException) -> dict:
    return {
        _TYPE: "exception",
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if exc.__traceback__ is not None
        else "",
    }


def decode_exception(data: dict) -> Exception:
    """The exception ``data`` describes: the class of :mod:`mlx_magic.errors` it
    names, built from its message (never another class: the name comes over a
    pipe), or :class:`RPCError` with the worker's traceback."""
    kind = str(data.get("type", "Exception"))
    message = str(data.get("message", ""))
    known = getattr(errors, kind, None)
    if (
        isinstance(known, type)
        and issubclass(known, MLXMagicError)
        and known not in (GenerationFailed, RPCError)  # they carry more than a message
    ):
        return known(message)
    return RPCError(kind, message, str(data.get("traceback", "")))


def _is_pil_image(value: object) -> bool:
    module = type(value).__module__ or ""
    if not module.startswith("PIL."):
        return False
    from PIL import Image

    return isinstance(value, Image.Image)


def _png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_from_png_base64(text: str) -> Image.Image:
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image
