"""Complete JSON objects holding a ``bbox_2d`` or ``point_2d`` key, found in
text that may still be growing and is not JSON as a whole.

Rather than parse the answer, the scanner looks for the keys, finds the
object holding each (from a ``{`` before the key to the ``}`` that closes it
after the key, skipping strings), then parses just that object. An object
cut off by the end of the text is read again on the next call; one that
never parses is skipped. Python-style dicts (single quotes, trailing
commas) are read by a looser fallback.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Optional, Union

NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
KEY = re.compile(r"""["'](?:bbox_2d|point_2d)["']""")
KEY_MARGIN = len('"point_2d"')
"""How much of the end of the text may hold a key cut in half."""
STRUCTURE = re.compile(r'[{}"\\]')
MAX_OBJECT = 4000
"""Longest object read, in characters: a grounding object is a few dozen; an
unclosed ``{`` must not be rescanned to the end of a long answer every call."""
LOOKBACK = 1000
"""How far before its key an object may open."""
MAX_CANDIDATES = 8
"""How many ``{`` before a key may be tried as the one holding it."""
INCOMPLETE, INVALID = -1, -2

LOOSE_LIST = re.compile(r"""["'](bbox_2d|point_2d)["']\s*:\s*\[\s*\[?([^\[\]]*)\]""")
LOOSE_LABEL = re.compile(
    r"""["'](label|text_content)["']\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"""
)
MAX_LABEL = 100


class JsonScanner:
    """Yields each complete grounding object once, as the text grows."""

    def __init__(self) -> None:
        self.pos = 0
        """Where the next key search starts."""
        self.floor = 0
        """The end of the last object read: no later object opens before it."""

    def objects(self, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(start, fields)`` of each object completed since the last call."""
        while True:
            key = KEY.search(text, self.pos)
            if key is None:
                self.pos = max(self.pos, len(text) - KEY_MARGIN)
                return
            holder = holding_object(text, key.start(), self.floor)
            if holder == INCOMPLETE:
                self.pos = key.start()
                return
            if not isinstance(holder, tuple):
                self.pos = key.end()
                continue
            start, end = holder
            self.pos = self.floor = end
            yield start, object_fields(text[start:end])


def holding_object(text: str, key: int, floor: int) -> Union[tuple[int, int], int]:
    """``(start, end)`` of the object holding the key at ``key``:
    :data:`INCOMPLETE` when it is still open, :data:`INVALID` when there is none.

    The holder is the nearest ``{`` before the key whose object closes after
    it: objects nested before the key close before it, and scanning forward
    (unlike walking back) knows which braces are inside strings.
    """
    low, before = max(floor, key - LOOKBACK), key
    for _ in range(MAX_CANDIDATES):
        start = text.rfind("{", low, before)
        if start < 0:
            return INVALID
        end = closing_brace(text, start)
        if end == INCOMPLETE or end == INVALID or end > key:
            return end if end < 0 else (start, end)
        before = start
    return INVALID


def closing_brace(text: str, start: int) -> int:
    """The end (one past ``}``) of the object opening at ``start``;
    :data:`INCOMPLETE` when the text ends first, :data:`INVALID` when it is
    longer than :data:`MAX_OBJECT`."""
    limit = min(len(text), start + MAX_OBJECT)
    depth, in_string, pos = 0, False, start
    while True:
        match = STRUCTURE.search(text, pos, limit)
        if match is None:
            return INCOMPLETE if limit == len(text) else INVALID
        char, pos = match.group(), match.end()
        if char == "\\":
            pos += 1  # the escaped character is never structure
        elif in_string:
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def object_fields(source: str) -> dict[str, Any]:
    """The fields of one object: parsed as JSON, else read loosely."""
    try:
        fields = json.loads(source)
    except (ValueError, RecursionError):
        fields = None
    if isinstance(fields, dict):
        return fields
    loose: dict[str, Any] = {}
    for match in LOOSE_LIST.finditer(source):
        loose.setdefault(match.group(1), NUMBER.findall(match.group(2)))
    label = LOOSE_LABEL.search(source)
    if label:
        raw = label.group(2) if label.group(2) is not None else label.group(3)
        loose[label.group(1)] = _unescape(raw)
    return loose


def number_list(value: Any, count: int) -> Optional[tuple[float, ...]]:
    """``count`` numbers from a list of numbers or numeric strings (a list
    holding one such list is unwrapped), or ``None``."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    numbers = []
    for item in value:
        if isinstance(item, bool):
            return None
        if isinstance(item, (int, float)):
            numbers.append(float(item))
        elif isinstance(item, str) and NUMBER.fullmatch(item.strip()):
            numbers.append(float(item))
        else:
            return None
    return tuple(numbers)


def clean_label(value: Any) -> str:
    """A label on one line, at most :data:`MAX_LABEL` characters."""
    if value is None or isinstance(value, (dict, list, tuple)):
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _unescape(raw: str) -> str:
    try:
        return str(json.loads(f'"{raw}"'))
    except ValueError:
        return raw
