"""Cut a streamed Markdown answer into blocks, so that each is sent once.

A rendered answer is shown as one output per block (paragraph, list,
heading, fenced code, table, math): a finished block is sent once and stays;
only the block still being written is updated in place. Traffic then grows
with the answer's length, not with its square, as long as the open block
stays small: a block longer than ``max_open`` characters is cut (a paragraph
after a sentence, a list before an item, code and tables between lines), and
the parts of a cut code block or table (up to :data:`JOIN_LIMIT` characters)
are joined again in its first output once the block is complete (a code
block in pieces would not copy as one).

Only the text is looked at, line by line, as CommonMark/GFM would see the
block boundaries that language models write; the rendering is the
frontend's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

#: An open block longer than this is cut (characters): each update resends
#: the open block, so its size bounds the cost of an update.
MAX_OPEN = 768
#: A cut leaves at least this much in the part that is finished.
MIN_PART = 256
#: A cut code block or table longer than this is not joined again (that
#: would send it a second time whole); its parts stay apart.
JOIN_LIMIT = 4096

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_BREAK = re.compile(r"^ {0,3}([-*_])( *\1){2,} *$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+) *$")
_ITEM = re.compile(r"^( {0,3})([-*+]|\d{1,9}[.)])(\s|$)")
_DELIMITER_ROW = re.compile(r"^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$")
_QUOTE = re.compile(r"^ {0,3}>")
_SENTENCE_END = re.compile(r"[.!?:;][)\"'*_]*( +|\n)")


@dataclass(frozen=True)
class Segment:
    """One output's worth of the answer.

    Attributes:
        index: its place among the answer's outputs (0, 1, …).
        text: the answer's own text (the segments, joined, are the answer).
        prefix: shown before it: the opening line of a code block, or the
            header of a table, that a cut left in an earlier segment.
        suffix: shown after it: the closing fence of a code block cut here.
        joined: it is a part of a code block or table that a :class:`Joined`
            will show whole once complete.
    """

    index: int
    text: str
    prefix: str = ""
    suffix: str = ""
    joined: bool = False

    @property
    def markdown(self) -> str:
        return self.prefix + self.text + self.suffix


@dataclass(frozen=True)
class Joined:
    """Segments ``first`` … ``last`` are one code block or table, cut for
    size: ``first`` shows all of it (``text``) and the others nothing."""

    first: int
    last: int
    text: str


@dataclass
class _Carry:
    """A block cut for size, continued in the next segment."""

    kind: str
    prefix: str = ""
    fence: str = ""  # the fence characters of a code block (``````` or ``~~~``)
    #: The parts so far of a code block or table to join (``None``: no join).
    parts: Optional[list[Segment]] = None
    offset: int = 0  # where its first part starts in the answer


class MarkdownBlocks:
    """Feeds on the answer's text; says which segments are finished.

    Args:
        max_open: the longest the open segment may grow before it is cut.
    """

    def __init__(self, max_open: int = MAX_OPEN, min_part: int = MIN_PART):
        self.max_open = max_open
        self.min_part = min(min_part, max_open // 2)
        self._text = ""
        self._start = 0  # where the open segment begins in the answer
        self.index = 0  # the open segment's index
        self._carry: Optional[_Carry] = None

    @property
    def open(self) -> Segment:
        """The segment still being written (its text may be empty)."""
        carry = self._carry
        text = self._text[self._start :]
        prefix = carry.prefix if carry else ""
        return Segment(self.index, text, prefix)

    def add(self, text: str) -> list[Segment | Joined]:
        """Take more of the answer; returns the segments it finished (and the
        joins of code blocks and tables that were cut), in order."""
        self._text += text
        done: list[Segment | Joined] = []
        while True:
            rest = self._text[self._start :]
            end = _block_end(rest, self._carry)
            if end is not None:
                done += self._finish(end, complete=True)
            elif len(rest) > self.max_open and (cut := self._cut(rest)) is not None:
                done += self._finish(cut, complete=False)
            else:
                return done

    def finish(self) -> list[Segment | Joined]:
        """The answer is complete: the open segment is finished too."""
        rest = self._text[self._start :]
        return self._finish(len(rest), complete=True) if rest or self._carry else []

    def _finish(self, length: int, complete: bool) -> list[Segment | Joined]:
        part = self._text[self._start : self._start + length]
        carry = self._carry
        kind = carry.kind if carry else _kind_of(part)
        prefix = carry.prefix if carry else ""
        done: list[Segment | Joined] = []
        next_carry = None if complete else self._continuation(kind, part, carry)
        suffix = ""
        if next_carry is not None and kind == "fence":
            suffix = ("" if part.endswith("\n") else "\n") + next_carry.fence
        group = next_carry or carry
        parts = group.parts if group is not None else None
        too_long = group is not None and self._start + length - group.offset > JOIN_LIMIT
        if group is not None and parts is not None and too_long:
            # Too long to send again whole: its parts keep their own copies.
            done += [replace(earlier, joined=False) for earlier in parts]
            group.parts = parts = None
        segment = Segment(self.index, part, prefix, suffix, joined=parts is not None)
        done.append(segment)
        if parts is not None and next_carry is not None:
            parts.append(segment)
        elif parts is not None and carry is not None:
            whole = self._text[carry.offset : self._start + length]
            done.append(Joined(parts[0].index if parts else self.index, self.index, whole))
        self._start += length
        self.index += 1
        self._carry = next_carry
        return done

    def _continuation(self, kind: str, part: str, carry: Optional[_Carry]) -> _Carry:
        """What the next segment of a block cut after ``part`` needs."""
        if carry is not None:
            return carry
        first_lines = [line for line in part.splitlines(True) if line.strip()]
        if kind == "fence":
            opener = first_lines[0].rstrip("\n") + "\n"
            fence = _FENCE.match(opener).group(1)  # type: ignore[union-attr]
            return _Carry("fence", opener, fence, [], self._start)
        if kind == "table":
            return _Carry("table", "".join(first_lines[:2]), "", [], self._start)
        return _Carry(kind)

    def _cut(self, rest: str) -> Optional[int]:
        """Where to cut an open segment that grew too long."""
        kind = self._carry.kind if self._carry else _kind_of(rest)
        if kind == "math":
            return None  # a formula cut in two would render as neither
        low, high = self.min_part, self.max_open
        window = rest[:high]
        lines = [m.end() for m in re.finditer("\n", window) if m.end() >= low]
        if kind in ("fence", "table"):
            candidates = lines
        elif kind == "list":
            items = [
                m.start() + 1
                for m in re.finditer(r"\n(?= {0,3}([-*+]|\d{1,9}[.)])\s)", window)
                if m.start() + 1 >= low
            ]
            candidates = items or lines
        else:
            candidates = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() >= low]
            candidates = candidates or lines
        if not candidates and kind not in ("fence", "table"):
            candidates = [m.end() for m in re.finditer(" +", window) if m.end() >= low]
        if not candidates:
            return high
        balanced = [c for c in candidates if _balanced(rest[:c])]
        return (balanced or candidates)[-1]


def _balanced(text: str) -> bool:
    """No inline code, bold or math left open at the end of ``text``."""
    return text.count("`") % 2 == 0 and text.count("**") % 2 == 0 and text.count("$") % 2 == 0


def _kind_of(text: str) -> str:
    """The kind of block that ``text`` begins (its first non-blank lines)."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "blank"
    first = lines[0]
    if _FENCE.match(first):
        return "fence"
    if first.strip().startswith("$$"):
        return "math"
    if _ITEM.match(first):
        return "list"
    if len(lines) > 1 and "|" in first and _DELIMITER_ROW.match(lines[1]):
        return "table"
    return "paragraph"


def _interrupts(line: str) -> bool:
    """A line that ends the paragraph before it and begins its own block."""
    return bool(
        _HEADING.match(line)
        or _FENCE.match(line)
        or line.strip().startswith("$$")
        or _ITEM.match(line)
        or _QUOTE.match(line)
        or (_BREAK.match(line) and not line.strip().startswith("-"))
    )


def _block_end(text: str, carry: Optional[_Carry]) -> Optional[int]:
    """Where the first complete block of ``text`` ends (after its last line,
    or before the line that begins the next block); ``None`` while open."""
    kind = carry.kind if carry else None
    fence = carry.fence if carry else ""
    lines_in_block = 0
    blank_before = False  # in a list: a blank line, the list may still go on
    position = 0
    while True:
        newline = text.find("\n", position)
        if newline < 0:
            return None
        line, end = text[position:newline], newline + 1
        blank = not line.strip()
        if kind is None:
            if not blank:
                kind = _start_kind(line)
                if kind in ("heading", "break"):
                    return end
                if kind == "fence":
                    fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
                elif kind == "math" and _closes_math(line, opening=True):
                    return end
                lines_in_block = 1
        elif kind == "fence":
            stripped = line.strip()
            if stripped.startswith(fence[:3]) and set(stripped) <= {fence[0]}:
                if len(stripped) >= len(fence):
                    return end
        elif kind == "math":
            if _closes_math(line, opening=False):
                return end
        elif kind == "list":
            if blank:
                blank_before = True
            elif blank_before:
                if not (line.startswith(("  ", "\t")) or _ITEM.match(line)):
                    return position  # the blank line ended the list
                blank_before = False
            elif not line.startswith((" ", "\t")) and _interrupts(line) and not _ITEM.match(line):
                return position  # a heading, code, a quote right after the list
        else:  # paragraph, table, quote
            if blank:
                return end
            if kind == "paragraph":
                if _interrupts(line):
                    return position
                if _SETEXT.match(line) and lines_in_block >= 1:
                    return end
            elif kind == "table" and "|" not in line:
                return position
            elif kind == "quote" and not _QUOTE.match(line) and _interrupts(line):
                return position
            if kind == "paragraph" and lines_in_block == 1 and _DELIMITER_ROW.match(line):
                kind = "table"
            lines_in_block += 1
        position = end


def _start_kind(line: str) -> str:
    if _FENCE.match(line):
        return "fence"
    if _HEADING.match(line):
        return "heading"
    if _BREAK.match(line):
        return "break"
    if line.strip().startswith("$$"):
        return "math"
    if _ITEM.match(line):
        return "list"
    if _QUOTE.match(line):
        return "quote"
    return "paragraph"


def _closes_math(line: str, opening: bool) -> bool:
    """Whether a ``$$`` block ends on ``line`` (for its first line: a
    formula that opens and closes on it)."""
    stripped = line.strip()
    if opening:
        return len(stripped) > 2 and stripped.endswith("$$")
    return stripped.endswith("$$")
