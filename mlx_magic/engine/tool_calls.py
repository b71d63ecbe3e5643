"""Tool calls in a text model's answer, read with mlx-lm's own machinery (runtime side).

mlx-lm decides from a model's chat template (or its tokenizer config) which
family's tool-call syntax it writes, and gives its tokenizer wrapper the
markers (``tool_call_start``, ``tool_call_end``) and the parser
(``mlx_lm/tool_parsers/``). Its server splits the answer's text at those
markers with :class:`mlx_lm.generate.TextStateMachine` and hands each call's
text to the parser; this does the same on the finished answer, so every family
mlx-lm reads (Qwen/Hermes ``<tool_call>`` JSON, Mistral ``[TOOL_CALLS]``,
LFM2's pythonic calls, ...) is read here too, and no parser is written twice.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from mlx_magic.errors import UserError
from mlx_magic.vocabulary.tools import PromptRendered, ProposedCall, ToolCallsFound
from mlx_magic.vocabulary.values import GenerationRequest


def check_tool_calling(tokenizer: Any, request: GenerationRequest, model: str) -> None:
    """``--tools`` needs a model whose tokenizer mlx-lm knows a tool-call syntax for.

    Raises:
        UserError: it has none (or no chat template to put the tools in), in one line.
    """
    if request.tools is None:
        return
    if not getattr(tokenizer, "has_chat_template", False) or not getattr(
        tokenizer, "has_tool_calling", False
    ):
        raise UserError(
            f"--tools: {model} has no tool calling that mlx-lm knows (its chat template names "
            "no tool-call syntax): use a model made for tools, such as Qwen2.5 or Qwen3"
        )


def template_arguments(request: GenerationRequest) -> dict:
    """What ``apply_chat_template`` is given besides the messages: the tools offered."""
    if request.tools is None:
        return {}
    return {"tools": [dict(schema) for schema in request.tools.schemas]}


def tool_messages(request: GenerationRequest) -> list[dict]:
    """The tool turns that follow the user's prompt (the calls so far and their results)."""
    return [] if request.tools is None else [dict(turn) for turn in request.tools.turns]


def rendered_prompt(tokenizer: Any, request: GenerationRequest, prompt: Sequence[int]) -> list:
    """``--show-prompt``: the prompt as the template rendered it, as an event (or none)."""
    if request.tools is None or not request.tools.show_prompt:
        return []
    return [PromptRendered(tokenizer.decode(list(prompt)))]


def tool_calls_in(
    tokenizer: Any, request: GenerationRequest, token_ids: Sequence[int]
) -> Optional[ToolCallsFound]:
    """The calls in the answer ``token_ids`` (``None`` when none was offered).

    A call whose text the family's parser cannot read is kept with its
    ``error``: the model is told, as of any other mistake.
    """
    from mlx_lm.generate import TextStateMachine, make_text_state_machine

    if request.tools is None:
        return None
    text = tokenizer.decode(list(token_ids))
    machine = make_text_state_machine(tokenizer)
    state = machine.make_state("normal")
    state, segments = TextStateMachine.split(state, text)
    _, rest, current = TextStateMachine.flush(state)
    segments.append((current, rest))
    calls: list[ProposedCall] = []
    content: list[str] = []
    pending: Optional[str] = None
    # A call ends where its state does (Mistral's has no end marker: at the end).
    for name, piece in segments + [(None, "")]:
        if name == "tool":
            pending = (pending or "") + piece
            continue
        if pending is not None:
            calls.extend(_parsed(tokenizer, pending, request.tools.schemas))
            pending = None
        if name == "normal":
            content.append(piece)
    return ToolCallsFound(calls=tuple(calls), content="".join(content).strip())


def _parsed(tokenizer: Any, text: str, schemas: Sequence[dict]) -> list[ProposedCall]:
    try:
        parsed = tokenizer.tool_parser(text, list(schemas))
    except Exception as error:  # noqa: BLE001 - each family's parser raises its own
        return [ProposedCall(name="", text=text.strip(), error=f"the call did not parse ({error})")]
    out = []
    for call in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            out.append(ProposedCall(name="", text=text.strip(), error="the call names no function"))
            continue
        arguments = call.get("arguments")
        if arguments is None:  # a call without arguments may leave them out
            arguments = {}
        if isinstance(arguments, str):  # some families' parsers keep them as JSON text
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                pass
        if not isinstance(arguments, dict):
            out.append(
                ProposedCall(
                    name=call["name"],
                    text=text.strip(),
                    error="its arguments are not a JSON object",
                )
            )
            continue
        out.append(ProposedCall(name=call["name"], arguments=arguments, text=text.strip()))
    return out
