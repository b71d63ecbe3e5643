"""``--tools`` on the OpenAI-compatible wire: the tools offered, the tool turns
so far, and the calls a server streams back.

Requests
    The schemas :class:`~mlx_magic.vocabulary.tools.ToolUse` holds go as
    ``tools`` (already ``{"type": "function", "function": {...}}``); each
    earlier round of calls as an assistant message with ``tool_calls`` (their
    ``arguments`` as JSON text, as the API has them) followed by one ``role:
    tool`` message per call, with its ``tool_call_id``. The server renders
    them with its own chat template and parses its model's calls itself.

Answers
    A server streams each call as ``tool_calls`` deltas: the first with the
    call's ``index``, ``id`` and ``function.name``, then its
    ``function.arguments`` in pieces (some servers send a whole call in one
    delta). :class:`CallAssembler` joins the pieces by index; at the end of a
    complete answer they become the
    :class:`~mlx_magic.vocabulary.tools.ToolCallsFound` the engine sends for a
    local model, so the same loop, step view and confirmation apply.
    Arguments that are not a JSON object are kept as the call's ``error``
    (the model is told, as of any other mistake).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from mlx_magic.vocabulary.tools import ProposedCall, ToolCallsFound
from mlx_magic.vocabulary.values import GenerationRequest


def tool_fields(request: GenerationRequest) -> tuple[dict, list[dict]]:
    """What a chat request adds for ``--tools``: the body's ``tools`` field (or
    nothing) and the messages after the user's prompt."""
    if request.tools is None:
        return {}, []
    fields = {"tools": [dict(schema) for schema in request.tools.schemas]}
    return fields, [wire_message(turn) for turn in request.tools.turns]


def wire_message(turn: dict) -> dict:
    """A tool turn as chat templates read it, as the OpenAI API takes it (any
    other message as it is)."""
    if turn.get("role") == "tool":
        return {
            "role": "tool",
            "tool_call_id": turn.get("tool_call_id"),
            "content": turn.get("content", ""),
        }
    if turn.get("role") == "assistant" and turn.get("tool_calls"):
        calls = []
        for call in turn["tool_calls"]:
            function = call.get("function") or {}
            arguments = function.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            calls.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {"name": function.get("name"), "arguments": arguments},
                }
            )
        # The API reads no content as null (some servers refuse an empty string beside calls).
        return {"role": "assistant", "content": turn.get("content") or None, "tool_calls": calls}
    return dict(turn)


@dataclass
class _Pieces:
    """One call as its deltas came so far."""

    id: Optional[str] = None
    name: str = ""
    arguments: str = ""


class CallAssembler:
    """Joins the streamed ``tool_calls`` deltas of one answer into calls."""

    def __init__(self) -> None:
        self.calls: dict[int, _Pieces] = {}
        #: The deltas read (a call counts as the answer having begun).
        self.deltas = 0

    def take(self, tool_calls: Any) -> None:
        """Read a delta's ``tool_calls`` list."""
        if not isinstance(tool_calls, list):
            return
        for position, delta in enumerate(tool_calls):
            if not isinstance(delta, dict):
                continue
            self.deltas += 1
            index = delta.get("index")
            if not isinstance(index, int):
                # No index (a server that sends whole calls): a new call each time.
                index = len(self.calls) + position
            call = self.calls.setdefault(index, _Pieces())
            if isinstance(delta.get("id"), str) and delta["id"]:
                call.id = delta["id"]
            function = delta.get("function")
            if not isinstance(function, dict):
                continue
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                call.arguments += arguments
            elif isinstance(arguments, dict):  # a whole object, as some servers send it
                call.arguments = json.dumps(arguments)

    def found(self, content: str) -> ToolCallsFound:
        """The calls, in order, and the answer's text outside them."""
        calls = tuple(_proposed(self.calls[index]) for index in sorted(self.calls))
        return ToolCallsFound(calls=calls, content=content.strip())


def _proposed(call: _Pieces) -> ProposedCall:
    text = call.arguments.strip()
    try:
        arguments = json.loads(text or "{}")
    except ValueError as error:
        return ProposedCall(
            name=call.name, text=text, error=f"the call did not parse ({error})", id=call.id
        )
    if not isinstance(arguments, dict):
        return ProposedCall(
            name=call.name, text=text, error="its arguments are not a JSON object", id=call.id
        )
    return ProposedCall(name=call.name, arguments=arguments, text=text, id=call.id)
