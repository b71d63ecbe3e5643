"""Named conversations that continue across cells (``%%mlx --chat NAME``).

A conversation is a list of turns (the user's text and the model's answer)
kept in the kernel. Each new turn sends the whole history; the runtime's
prompt prefix cache recognises the history it has already read, so only the
new text is prefilled and a follow-up starts as fast as a first question.

Running the cell of an earlier turn again rewinds the conversation to just
before that turn (the prefix cache trims its KV state to match) instead of
appending a duplicate. Cells are recognised by the id the frontend sends
(JupyterLab, Notebook 7, VS Code); without one, a turn whose text is exactly
the same as an earlier turn's counts as a re-run of that turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_CONVERSATION = "default"
_FORMAT = "mlx_magic.conversation/1"


@dataclass
class Turn:
    user: str
    assistant: str
    cell_id: Optional[str] = None
    image_names: tuple = ()  # captions of the images this turn sent
    # The images themselves stay in the kernel (sent again with each later
    # turn); a saved transcript keeps only their names.
    images: tuple = field(default=(), repr=False, compare=False)
    image_keys: tuple = field(default=(), repr=False, compare=False)
    # ``--tools``: the model's calls and their results, between the question and the
    # answer (chat messages), so a later turn knows what was called and found.
    tool_turns: tuple = ()

    def history_entry(self) -> tuple:
        """The turn as a request's ``history`` holds it."""
        if self.tool_turns:
            return (self.user, self.assistant, self.tool_turns)
        return (self.user, self.assistant)


@dataclass
class PendingTurn:
    """Where a cell's answer will go once it finishes: its conversation, the
    index it takes there, and the images it sends."""

    conversation: "Conversation"
    index: int
    image_names: tuple = ()


@dataclass
class Conversation:
    name: str
    model: str  # the model's key: a conversation keeps its model
    model_name: str
    system: Optional[str] = None
    turns: list[Turn] = field(default_factory=list)

    def history_before(self, cell_id: Optional[str], prompt: str) -> tuple[list[Turn], int]:
        """The turns that precede a new turn from ``cell_id`` with ``prompt``.

        Returns the turns to send as history and the index the new turn will
        take (less than ``len(turns)`` when it re-runs an earlier turn).
        """
        for index, turn in enumerate(self.turns):
            same_cell = cell_id is not None and turn.cell_id == cell_id
            same_text = cell_id is None and turn.cell_id is None and turn.user == prompt
            if same_cell or same_text:
                return self.turns[:index], index
        return list(self.turns), len(self.turns)

    def record(self, index: int, turn: Turn, dropped_oldest: int = 0) -> None:
        """Put ``turn`` at ``index`` (dropping any later turns), then forget the
        ``dropped_oldest`` first turns that no longer fit the model's context."""
        self.turns = self.turns[:index] + [turn]
        if dropped_oldest:
            self.turns = self.turns[dropped_oldest:]

    def markdown(self) -> str:
        """The transcript as Markdown."""
        lines = [f"### Conversation `{self.name}` with {self.model_name}"]
        if self.system:
            lines.append(f"*System:* {self.system}")
        if not self.turns:
            lines.append("*(no turns yet)*")
        for number, turn in enumerate(self.turns, 1):
            images = "".join(f" *[image: {name}]*" for name in turn.image_names)
            lines.append(f"**You ({number}):**{images} {turn.user}")
            lines.append(f"**{self.model_name}:** {turn.assistant}")
        return "\n\n".join(lines)

    def to_json(self) -> dict:
        # The images are left out: a transcript names them, the kernel keeps them.
        turns = [
            {
                "user": turn.user,
                "assistant": turn.assistant,
                "cell_id": turn.cell_id,
                "image_names": list(turn.image_names),
                **({"tool_turns": list(turn.tool_turns)} if turn.tool_turns else {}),
            }
            for turn in self.turns
        ]
        return {
            "format": _FORMAT,
            "name": self.name,
            "model": self.model,
            "model_name": self.model_name,
            "system": self.system,
            "turns": turns,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Conversation":
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not an mlx_magic conversation (format {found!r})")
        if not isinstance(data.get("turns", []), list) or not all(
            isinstance(turn, dict) for turn in data.get("turns", [])
        ):
            raise ValueError("its turns are not a list of objects")
        turns = [
            Turn(
                **{
                    **turn,
                    "image_names": tuple(turn.get("image_names", ())),
                    "tool_turns": tuple(turn.get("tool_turns", ())),
                }
            )
            for turn in data.get("turns", [])
        ]
        return cls(
            name=data["name"],
            model=data["model"],
            model_name=data.get("model_name", data["model"]),
            system=data.get("system"),
            turns=turns,
        )


class Conversations:
    """All conversations of a kernel, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Conversation] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Optional[Conversation]:
        return self._by_name.get(name)

    def start_or_continue(
        self, name: str, model_key: str, model_name: str, system: Optional[str]
    ) -> Conversation:
        """The conversation ``name``, started if new.

        Raises:
            ValueError: it exists with another model (one line, with the fix).
        """
        conversation = self._by_name.get(name)
        if conversation is None:
            conversation = Conversation(
                name=name, model=model_key, model_name=model_name, system=system
            )
            self._by_name[name] = conversation
        elif conversation.model != model_key:
            raise ValueError(
                f"Conversation '{name}' is with {conversation.model_name}, not {model_name}: "
                f"start another with --chat NEW_NAME, or clear it with %mlx chat reset {name}"
            )
        return conversation

    def reset(self, name: Optional[str]) -> list[str]:
        """Forget one conversation (or all with ``None``); returns the names."""
        if name is None:
            names = self.names()
            self._by_name.clear()
            return names
        return [name] if self._by_name.pop(name, None) is not None else []

    def save(self, name: str, path: Path) -> Path:
        conversation = self._by_name[name]
        path.write_text(
            json.dumps(conversation.to_json(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        return path

    def load(self, path: Path) -> Conversation:
        """Read a saved conversation; it replaces one of the same name."""
        conversation = Conversation.from_json(json.loads(path.read_text(encoding="utf-8")))
        self._by_name[conversation.name] = conversation
        return conversation
