"""What ``--format code`` and ``--format json`` take from an answer."""

from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[ \t]*\n(.*?)(?:\n```|\Z)", re.DOTALL)


def first_code_block(answer: str) -> str:
    """The first fenced code block of ``answer``, or the whole answer."""
    match = _FENCE.search(answer)
    return (match.group(2) if match else answer).strip("\n")


def parse_json_answer(answer: str):
    """The JSON value in ``answer`` (a fenced ```json block is unwrapped).

    Raises:
        ValueError: the answer is not valid JSON (one line, with the position).
    """
    text = answer.strip()
    if text.startswith("```"):
        text = first_code_block(text).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the answer is not valid JSON ({error.msg} at line {error.lineno} "
            f"column {error.colno})"
        ) from error
