"""The one edge where mlx_magic's errors become IPython's.

A mistake the user can fix is raised as a :class:`~mlx_magic.errors.UserError`
(or one of its subclasses) by whichever layer finds it: the magics, the
runtime, the engine, the loaders. Every entry point IPython calls (``%%mlx``,
``%%mlx_vision``, ``%mlx``) runs inside :func:`as_usage_errors`, which turns it
into exactly IPython's ``UsageError`` (a subclass would print a traceback),
raised ``from`` the error so that ``%tb`` still shows the cause. Widgets, which
have no cell to fail, catch ``UserError`` themselves and show its line.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from IPython.core.error import UsageError

from mlx_magic.errors import UserError, one_line

F = TypeVar("F", bound=Callable[..., Any])

#: The longest line a mistake is shown as: argparse echoes every word it could
#: not read, and a pasted document in the flags made a 120 KB "line".
LINE_LIMIT = 600


@contextmanager
def as_usage_errors() -> Iterator[None]:
    """Turn a :class:`UserError` raised inside into one ``UsageError`` line
    (IPython's own, from the flags' parser, too when it runs long)."""
    try:
        yield
    except UserError as error:
        raise UsageError(_short(str(error))) from error
    except UsageError as error:
        if len(str(error)) <= LINE_LIMIT:
            raise
        raise UsageError(_short(str(error))) from error


def _short(message: str) -> str:
    return message if len(message) <= LINE_LIMIT else one_line(message, LINE_LIMIT)


def user_errors_as_usage(method: F) -> F:
    """Run ``method`` (a magic) inside :func:`as_usage_errors`."""

    @functools.wraps(method)
    def translated(*args: Any, **kwargs: Any) -> Any:
        with as_usage_errors():
            return method(*args, **kwargs)

    return translated  # type: ignore[return-value]
