"""The notebook's functions as tools (``%%mlx --tools NAMES``): what is offered, how.

Each function's JSON schema comes from its signature and type hints through
Pydantic (:class:`pydantic.TypeAdapter` of the function: defaults, ``Optional``,
``Literal``, lists, dicts, Pydantic models for structured arguments) and its
descriptions from its docstring (Google style, read by transformers'
``parse_google_format_docstring``, which ``get_json_schema`` uses too). The
arguments a model writes are checked against the same signature and types
before anything runs (``OfferedTool.check``): a call that does not fit goes
back to the model as an error. An MCP server's tools (:mod:`.mcp_servers`)
are offered the same way, their schemas as the server lists them.

The loop that offers them and runs the calls is :mod:`.tool_loop`.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from mlx_magic.errors import UserError

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class OfferedTool:
    """A function the model may call: a notebook function, or an MCP server's tool.

    Attributes:
        name: the name the model calls it by (a function's ``__name__``).
        function: what runs, with the checked arguments as keywords.
        schema: its JSON schema, as chat templates take ``tools``.
        check: the arguments as the model wrote them, checked and converted
            (``ValueError``, in one line, if they do not fit).
        source: where it comes from (``"notebook"``, or the MCP server's name).
    """

    name: str
    function: Callable[..., Any]
    schema: dict
    check: Callable[[dict], dict]
    source: str = "notebook"


def offered_tools(
    names: str, namespace: dict, elsewhere: Callable[[str], Optional[list[OfferedTool]]]
) -> list[OfferedTool]:
    """The functions ``--tools`` names: comma-separated names of functions, of
    lists of functions, or of modules (their public functions); ``elsewhere``
    finds a name the notebook does not have (an MCP server, or one of its tools).

    Raises:
        UserError: a name the notebook does not have, a value that is not a
            function, or a function whose signature no schema can express.
    """
    tools: list[OfferedTool] = []
    for name in (part.strip() for part in names.split(",")):
        if not name:
            continue
        found = None if name in namespace else elsewhere(name)
        if found is not None:
            tools += found
            continue
        if name not in namespace and not hasattr(builtins, name):
            raise UserError(
                f"--tools: the notebook has no {name!r}: define the function first "
                "(comma-separated names of functions, of lists of them, or of modules)"
            )
        value = namespace[name] if name in namespace else getattr(builtins, name)
        tools += [tool_of(function) for function in _functions_in(name, value)]
    if not tools:
        raise UserError("--tools needs at least one function: --tools NAME[,NAME...]")
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            raise UserError(f"--tools: two functions are named {tool.name!r}: offer one")
        seen.add(tool.name)
    return tools


def _functions_in(name: str, value: Any) -> list[Callable[..., Any]]:
    if isinstance(value, types.ModuleType):
        functions: list[Callable[..., Any]] = [
            member
            for member_name, member in inspect.getmembers(value, inspect.isfunction)
            if not member_name.startswith("_") and member.__module__ == value.__name__
        ]
        if not functions:
            raise UserError(f"--tools: module {name} defines no public function")
        return functions
    if isinstance(value, (list, tuple)):
        for item in value:
            if not callable(item):
                raise UserError(
                    f"--tools: {name} holds a {type(item).__name__}, not only functions"
                )
        return list(value)
    if callable(value) and not isinstance(value, type):
        return [value]
    raise UserError(
        f"--tools: {name} is a {type(value).__name__}, not a function, a list of functions "
        "or a module"
    )


def tool_of(function: Callable[..., Any]) -> OfferedTool:
    """``function`` as a tool: its name, schema, signature and type hints.

    Raises:
        UserError: its signature cannot be put in a JSON schema (no readable
            signature, ``*args``, ``**kwargs``, positional-only parameters, a
            type with no JSON form), in one line naming the fix.
    """
    import pydantic
    from transformers.utils.chat_template_utils import parse_google_format_docstring

    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(
            f"--tools: {function!r} has no name a model can call: define it with def NAME(...)"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as error:
        raise UserError(
            f"--tools: {name} has no signature Python can read (a builtin?): wrap it in a "
            "def with named, typed parameters"
        ) from error
    for parameter in signature.parameters.values():
        if parameter.kind not in _NAMED:
            raise UserError(
                f"--tools: {name}'s parameter {parameter} cannot be named in a JSON schema: "
                "give it named parameters (no *args, **kwargs or /)"
            )
    try:
        hints = typing.get_type_hints(function)
        parameters = pydantic.TypeAdapter(function).json_schema()  # type: ignore[arg-type]
    except Exception as error:  # noqa: BLE001 - Pydantic's and typing's many errors, said in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"--tools: a parameter type of {name} has no JSON schema ({first}): use str, "
            "numbers, bool, lists, dicts, Literal or a Pydantic model"
        ) from error
    description, argument_docs, _ = parse_google_format_docstring(
        (inspect.getdoc(function) or "").strip()
    )
    parameters = _without_titles(parameters)
    for argument, text in (argument_docs or {}).items():
        if argument in parameters.get("properties", {}):
            parameters["properties"][argument]["description"] = text
    schema = {
        "type": "function",
        "function": {"name": name, "description": description or "", "parameters": parameters},
    }
    hints = {key: value for key, value in hints.items() if key in signature.parameters}
    return OfferedTool(name, function, schema, functools.partial(_checked, signature, hints))


def _without_titles(schema: Any) -> Any:
    """Pydantic's schema less its ``title`` strings (the names again): a shorter prompt."""
    if isinstance(schema, dict):
        return {
            key: _without_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    return schema


def _checked(signature: inspect.Signature, hints: dict, arguments: dict) -> dict:
    """A function's arguments, bound to its signature and validated (and
    converted: a dict becomes the Pydantic model the parameter asks for).

    Raises:
        ValueError: they do not fit, in one line (the model reads it).
    """
    import pydantic

    try:
        bound = signature.bind(**arguments)
    except TypeError as error:
        raise ValueError(str(error)) from None
    checked = {}
    for name, value in bound.arguments.items():
        hint = hints.get(name)
        if hint is None:
            checked[name] = value
            continue
        try:
            checked[name] = pydantic.TypeAdapter(hint).validate_python(value)
        except pydantic.ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in (name, *problem["loc"]))
            raise ValueError(f"argument {where}: {problem['msg']} (got {value!r})") from None
    return checked
