"""The values of a tool-using cell (``%%mlx --tools``): what a generation
offers, the calls the engine parsed out of an answer, and the record of each
step of the loop (``_mlx.steps``).

The functions themselves never cross a seam: the request carries their JSON
schemas and the turns so far as chat messages (plain dicts, as chat templates
read them); the engine hands back the calls it parsed with the model's own
tool parser (mlx-lm's), and the kernel runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

#: How one step ended: the call ran (``"ran"``) or raised (``"failed"``); the
#: user declined it (``"skipped"``); it named a function not offered
#: (``"refused"``); its arguments did not fit the schema or did not parse
#: (``"invalid"``); it outlived ``tool_timeout_s`` (``"timed out"``); an
#: interrupt stopped it (``"interrupted"``); or it is still waiting (``"asked"``).
StepState = Literal[
    "asked", "ran", "failed", "skipped", "refused", "invalid", "timed out", "interrupted"
]


@dataclass(frozen=True)
class ToolUse:
    """What a generation offers, and the tool turns so far.

    Attributes:
        schemas: one JSON schema per function, in the form chat templates
            take as ``tools`` (``{"type": "function", "function": {...}}``).
        turns: the chat messages after the user's prompt: the assistant's
            calls (``tool_calls``) and each call's result (role ``tool``).
        show_prompt: also send back the prompt as the template rendered it.
    """

    schemas: tuple = ()
    turns: tuple = ()
    show_prompt: bool = False


@dataclass(frozen=True)
class ProposedCall:
    """One call the model wrote, as the model family's parser read it.

    ``error`` is set (and ``arguments`` empty) where the text between the
    call markers did not parse; ``text`` is that text. ``id`` is the id a
    server gave the call (remote mode), which its ``tool`` turn names again.
    """

    name: str
    arguments: dict = field(default_factory=dict)
    text: str = ""
    error: Optional[str] = None
    id: Optional[str] = None


@dataclass(frozen=True)
class ToolCallsFound:
    """Event: the answer just generated holds these tool calls (in order),
    and ``content`` is its text outside them."""

    calls: tuple = ()
    content: str = ""


@dataclass(frozen=True)
class PromptRendered:
    """Event: the prompt exactly as the chat template rendered it (``--show-prompt``)."""

    text: str


@dataclass
class ToolStep:
    """One call of a tool loop, as ``_mlx.steps`` keeps it.

    Attributes:
        name: the function the model called.
        arguments: the arguments it passed (as parsed).
        state: how it ended (:data:`StepState`).
        result: what the function returned (the full value).
        error: why it did not run, or its exception in one line.
        seconds: how long it ran.
        step: which generation asked for it (1: the answer to the prompt).
    """

    name: str
    arguments: dict
    state: StepState = "asked"
    result: Any = None
    error: Optional[str] = None
    seconds: float = 0.0
    step: int = 1

    def reply(self, shorten: int = 2000) -> str:
        """What the model is told of the call (its ``tool`` turn)."""
        if self.state == "ran":
            return short_repr(self.result, shorten)
        if self.state == "skipped":
            return "The user declined this call; it did not run."
        return f"Error: {self.error}"

    def summary(self, shorten: int = 120) -> str:
        """One line for the cell: the result (shortened) or what went wrong."""
        if self.state == "ran":
            return short_repr(self.result, shorten)
        if self.state == "skipped":
            return "skipped (the model is told it was declined)"
        return f"{self.state}: {self.error}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{call_text(self.name, self.arguments)} → {self.summary()}")


def call_text(name: str, arguments: dict) -> str:
    """``name(a=1, b='x')``: a call as Python would write it."""
    return f"{name or '?'}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"


def short_repr(value: Any, limit: int) -> str:
    """``str`` of a string, ``repr`` of anything else, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
