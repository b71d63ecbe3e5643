"""``{name}`` in a cell's prompt, filled in from the notebook's variables.

Python's own format-string rules apply: ``{df.shape}`` and ``{Out[3]}`` work,
``{{`` and ``}}`` are literal braces, ``{x!r}`` and ``{x:.2f}`` format values.
"""

from __future__ import annotations

import string
import traceback
from typing import Mapping, Optional

from mlx_magic.errors import TemplateError


def fill_template(text: str, namespace: Mapping[str, object]) -> str:
    """``text`` with every ``{...}`` replaced from ``namespace``.

    Raises:
        TemplateError: an unknown name, a failing attribute or index, or a
            malformed brace.
    """
    try:
        return string.Formatter().vformat(text, (), _Namespace(namespace))
    except _UnknownName as missing:
        raise TemplateError(
            f"{{{missing.name}}} in the prompt names no variable: define it, write "
            f"{{{{{missing.name}}}}} for literal braces, or pass --no-interpolate"
        ) from missing
    except (AttributeError, LookupError, TypeError) as error:
        raise TemplateError(
            f"A {{…}} placeholder in the prompt failed: {error}; "
            "pass --no-interpolate to send braces as they are"
        ) from error
    except ValueError as error:
        raise TemplateError(
            f"The prompt's braces do not parse ({error}): write {{{{ and }}}} "
            "for literal braces, or pass --no-interpolate"
        ) from error


def last_error_text(shell) -> Optional[str]:
    """The last exception IPython showed, as a traceback text, or ``None``.

    IPython records it in ``sys.last_value`` (and ``sys.last_traceback``)
    when it shows a traceback, so no exception hook is needed.
    """
    import sys

    error = getattr(sys, "last_value", None)
    if error is None:
        return None
    lines = traceback.format_exception(type(error), error, getattr(sys, "last_traceback", None))
    return "".join(lines).rstrip()


class _UnknownName(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Namespace(dict):
    """Looks names up in the user namespace; unknown names raise clearly."""

    def __init__(self, namespace: Mapping[str, object]):
        super().__init__()
        self._namespace = namespace

    def __getitem__(self, key):
        if key in self._namespace:
            return self._namespace[key]
        raise _UnknownName(key)

    def __contains__(self, key):
        return key in self._namespace
