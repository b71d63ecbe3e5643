"""Every exception mlx_magic raises on purpose, in one hierarchy.

::

    MLXMagicError                    anything mlx_magic raises on purpose
    ├── UserError                    the user can fix it; shown as one UsageError line
    │   ├── ModelLoadError           a model that cannot be found or loaded
    │   │   ├── UnsupportedGGUF      a GGUF file the converter cannot handle (also ValueError)
    │   │   ├── ModelTooLarge        its weights exceed what the machine can give
    │   │   ├── HubUnreachable       no answer from the Hub (the cache may still serve)
    │   │   ├── WorkerError          the worker process died, hung or cannot start
    │   │   └── RemoteServerError    a server that cannot be reached or refused a request
    │   ├── ImageSourceError         an -i source that gives no image (also ValueError)
    │   ├── TemplateError            a {placeholder} that cannot be filled (also ValueError)
    │   └── MissingExtra             an optional part is not installed (names the extra)
    ├── GenerationFailed             the runtime sent a Failed event (carries it)
    ├── RPCError                     an exception of the worker process, brought back as text
    ├── ParamsError                  a JSON-RPC request whose params do not fit its method
    ├── DownloadStopped              a download told to stop (raised in its threads)
    ├── Cancelled                    a job was cancelled before its answer was complete
    │   └── CancelledDuringPrompt    ... while its prompt was being read
    └── EndpointFailure              one server failed an attempt (remote runtime, internal)
        ├── Unreachable              no text came from it: another server may answer
        └── Refused                  it refused the request: another would refuse it too

    KeyboardInterrupt
    └── GenerationInterrupted        a kernel interrupt stopped a generation

At the IPython edge (:mod:`mlx_magic.magics.edge`, the one place), every
:class:`UserError` becomes exactly ``UsageError`` (a subclass would print a
traceback), raised ``from`` the error so that ``%tb`` still shows the cause.
"""

from __future__ import annotations

from typing import Any, Optional


class MLXMagicError(Exception):
    """Anything mlx_magic raises on purpose."""


class UserError(MLXMagicError):
    """A mistake the user can fix; the message is one line that names the fix."""


class ModelLoadError(UserError):
    """A model could not be loaded for a reason the user can fix.

    The message is one line that names the model and the fix.
    """


class UnsupportedGGUF(ModelLoadError, ValueError):
    """The GGUF file cannot be converted (architecture or quantization type); the message is one line a user can act on."""


class ModelTooLarge(ModelLoadError):
    """A model's weights exceed what the machine can give; refused before it
    loads, in one line naming both sizes and a smaller quantization."""


class HubUnreachable(ModelLoadError):
    """No answer from the Hugging Face Hub (no network, HF_HUB_OFFLINE): a
    complete copy in the cache may still serve."""


class WorkerError(ModelLoadError):
    """The worker process died, hung, or cannot be started (one line, user-facing)."""


class RemoteServerError(ModelLoadError):
    """A server could not be reached or refused a request (one line, no secrets)."""


class ImageSourceError(UserError, ValueError):
    """One line a user can act on, naming the source.

    Attributes:
        source: The source as the user wrote it, when there is one.
    """

    def __init__(self, message: str, source: Optional[str] = None):
        super().__init__(message)
        self.source = source


class TemplateError(UserError, ValueError):
    """A placeholder could not be filled; the message says which and why."""


class MissingExtra(UserError):
    """An optional dependency a feature needs is not installed; the message
    names the ``pip install 'mlx_magic[EXTRA]'`` that brings it."""


def import_extra(module: str, extra: str, purpose: str) -> Any:
    """Import the optional ``module`` for ``purpose``.

    Raises:
        MissingExtra: it is not installed (one line naming ``mlx_magic[extra]``).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'mlx_magic[{extra}]'"
        ) from error


class GenerationFailed(MLXMagicError):
    """The runtime reported a :class:`~mlx_magic.vocabulary.values.Failed` event."""

    def __init__(self, failure: Any):
        super().__init__(failure.message)
        self.failure = failure


class RPCError(MLXMagicError):
    """An exception raised in the worker process, brought back as text.

    Attributes:
        remote_type: the name of the exception's class in the worker.
        remote_traceback: its formatted traceback there ("" if none).
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str = ""):
        text = f"{remote_type}: {message}" if message else remote_type
        if remote_traceback:
            text += "\n\nTraceback in the worker process:\n" + remote_traceback.rstrip()
        super().__init__(text)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback


class ParamsError(MLXMagicError):
    """The params of a JSON-RPC request do not fit its method."""


class DownloadStopped(MLXMagicError):
    """Raised inside a download once its stop is set (from the progress hook,
    at the next chunk received): what was written stays, for a resume."""


class Cancelled(MLXMagicError):
    """The job was cancelled before its answer was complete."""


class CancelledDuringPrompt(Cancelled):
    """Raised from a prompt progress callback to stop a long prefill."""


class EndpointFailure(MLXMagicError):
    """One attempt on one server failed (the remote runtime decides what next)."""


class Unreachable(EndpointFailure):
    """No text came from this URL (no connection, 5xx, a timeout…): another may answer."""


class Refused(EndpointFailure):
    """The server refused the request; another URL would refuse it too."""


class GenerationInterrupted(KeyboardInterrupt):
    """A kernel interrupt stopped a generation.

    It is a ``KeyboardInterrupt``, so "Run All" stops at this cell, but IPython
    shows it as one line instead of a traceback through the magic.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def one_line(text: object, limit: int | None = None) -> str:
    """``text`` on one line (runs of whitespace become one space), cut to
    ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text
