"""``--schema NAME``: the shape an answer must have, from a notebook value.

NAME is a Pydantic model class, a JSON-schema dict, or JSON text holding
one. It is checked here, in the kernel, with llguidance (the grammar engine
that constrains decoding on the runtime side; it imports no MLX), so a
schema that cannot be compiled is one line before anything runs. After the
answer, the text is parsed and validated: a Pydantic instance (or a dict)
goes to ``_mlx.data`` and ``--out``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from mlx_magic.errors import UserError, one_line

#: How constrained JSON is written: one line, a space after ``,`` and ``:``
#: (no runs of whitespace for a model to get lost in).
JSON_STYLE: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@dataclass(frozen=True)
class AnswerSchema:
    """A schema as the runtime needs it (JSON text) and as the cell validates with."""

    name: str
    json_text: str
    model: Optional[type] = None  # the Pydantic class, when it was one

    def parse(self, text: str) -> Any:
        """The answer as a Pydantic instance (or a dict).

        Raises:
            ValueError: the answer does not parse or validate (one line).
        """
        if self.model is not None:
            try:
                return self.model.model_validate_json(text)  # type: ignore[attr-defined]
            except Exception as error:  # pydantic.ValidationError
                raise ValueError(_first_line(error)) from error
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from error
        _validate(value, json.loads(self.json_text))
        return value


def answer_schema(name: str, namespace: Mapping[str, Any]) -> AnswerSchema:
    """Resolve and check ``--schema NAME``.

    Raises:
        UserError: no such variable, not a schema, or a schema llguidance
            cannot compile (the line says what is wrong).
    """
    if name not in namespace:
        raise UserError(
            f"--schema {name}: no variable named {name!r}; define a Pydantic model class or "
            "a JSON-schema dict"
        )
    value = namespace[name]
    model = None
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        model = value
        schema = value.model_json_schema()
    elif isinstance(value, Mapping):
        schema = dict(value)
    elif isinstance(value, str):
        try:
            schema = json.loads(value)
        except json.JSONDecodeError as error:
            raise UserError(f"--schema {name}: the text is not JSON ({error.msg})") from error
    else:
        raise UserError(
            f"--schema {name}: a {type(value).__name__} is not a schema; pass a Pydantic model "
            "class (class Person(BaseModel): ...) or a JSON-schema dict"
        )
    schema = strict(schema)
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as error:
        raise UserError(f"--schema {name}: the schema is not JSON-serializable: {error}") from error
    problem = _compile_problem(schema)
    if problem:
        raise UserError(f"--schema {name} does not compile: {problem}")
    return AnswerSchema(name, text, model)


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that
    lists its properties and does not say otherwise (OpenAI's strict mode):
    JSON Schema allows extra properties by default, and a model given the
    chance adds them without end."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _compile_problem(schema: dict) -> str:
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, JSON_STYLE)
        # Its report spans lines (a regex error draws a caret under the pattern).
        return one_line(llguidance.LLMatcher.validate_grammar(grammar) or "")
    except Exception as error:  # llguidance's own errors are ValueError / RuntimeError
        return _first_line(error)


def _validate(value: Any, schema: dict) -> None:
    """Validate against the JSON schema with ``jsonschema`` where it is installed."""
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as error:
        raise ValueError(f"does not match the schema: {error.message}") from error


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def data_columns(data: Any) -> dict:
    """A parsed answer's fields, as table columns (``--map``)."""
    if hasattr(data, "model_dump"):
        data = data.model_dump()
    if isinstance(data, Mapping):
        return {str(key): value for key, value in data.items()}
    return {"data": data}
