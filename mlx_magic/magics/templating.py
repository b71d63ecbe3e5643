"""``{name}`` in a cell's prompt, filled in from the notebook's variables.

Python's own format-string rules apply: ``{df.shape}`` and ``{Out[3]}`` work,
``{{`` and ``}}`` are literal braces, ``{x!r}`` and ``{x:.2f}`` format values.
Only names, their public attributes and their items are followed: an attribute
that starts with ``_`` (``{f.__globals__}``) is refused, since it leads from
any function to every module's globals (the environment's secrets included),
and the prompt may go to a server and into the saved notebook.
"""

from __future__ import annotations

import _string  # the field parser string.Formatter itself uses
import string
import traceback
from typing import TYPE_CHECKING, Any, Mapping, Optional

from mlx_magic.errors import TemplateError, one_line

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def fill_template(text: str, namespace: Mapping[str, object]) -> str:
    """``text`` with every ``{...}`` replaced from ``namespace``.

    Raises:
        TemplateError: an unknown name, a failing attribute or index, or a
            malformed brace.
    """
    try:
        return _PublicFormatter().vformat(text, (), _Namespace(namespace))
    except TemplateError:
        raise
    except _UnknownName as missing:
        raise TemplateError(
            f"{{{missing.name}}} in the prompt names no variable: define it, write "
            f"{{{{{missing.name}}}}} for literal braces, or pass --no-interpolate"
        ) from missing
    except ValueError as error:
        if _is_brace_syntax_error(error):
            raise TemplateError(
                f"The prompt's braces do not parse ({error}): write {{{{ and }}}} "
                "for literal braces, or pass --no-interpolate"
            ) from error
        raise TemplateError(_failed(error)) from error
    except Exception as error:  # the notebook's own objects: a property, __format__...
        raise TemplateError(_failed(error)) from error


def _failed(error: Exception) -> str:
    detail = one_line(f"{type(error).__name__}: {error}", 200)
    return (
        f"A {{…}} placeholder in the prompt failed ({detail}): fix the value or the "
        "format spec, or pass --no-interpolate to send braces as they are"
    )


def _is_brace_syntax_error(error: ValueError) -> bool:
    """string.Formatter's own complaints about the braces themselves."""
    text = str(error)
    return any(
        words in text
        for words in (
            "Single '}'",
            "Single '{'",
            "expected '}'",
            "unmatched '{'",
            "Max string recursion",
            "cannot switch from",
            "Empty attribute",
        )
    )


def last_error_text(shell: Optional[InteractiveShell]) -> Optional[str]:
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


class _PublicFormatter(string.Formatter):
    """A formatter that follows public attributes and items only."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
        first, rest = _string.formatter_field_name_split(field_name)
        value = self.get_value(first, args, kwargs)
        for is_attribute, key in rest:
            if is_attribute and str(key).startswith("_"):
                raise TemplateError(
                    f"{{{field_name}}} in the prompt reads the private attribute {key!r}: "
                    "a placeholder follows names, their public attributes and items only "
                    "(put the value in a variable first), or pass --no-interpolate"
                )
            value = getattr(value, key) if is_attribute else value[key]
        return value, first


class _UnknownName(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Namespace(dict):
    """Looks names up in the user namespace; unknown names raise clearly."""

    def __init__(self, namespace: Mapping[str, object]):
        super().__init__()
        self._namespace = namespace

    def __getitem__(self, key: str) -> object:
        if key in self._namespace:
            return self._namespace[key]
        raise _UnknownName(key)

    def __contains__(self, key: object) -> bool:
        return key in self._namespace
