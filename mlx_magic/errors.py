"""One-line errors for mistakes a user can fix."""

from __future__ import annotations

from IPython.core.error import UsageError


def usage_error(message: str, cause: BaseException | None = None) -> UsageError:
    """A ``UsageError`` (exactly that class: IPython prints a subclass with a
    full traceback) carrying ``cause`` for those who look."""
    error = UsageError(message)
    error.__cause__ = cause
    return error


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
