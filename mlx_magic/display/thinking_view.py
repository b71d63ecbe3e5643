"""The "Thinking" block of a notebook cell: a reasoning model's thinking, live,
then folded away above the answer.

While the model thinks, the block shows a live token count and time and the
newest lines of the thinking (only its last :data:`TAIL_CHARS` characters
are resent at each update, so the traffic stays linear), with an "Answer
now" button where the runtime can end the thinking on request. When the
thinking ends, the block is replaced, in place, by a static, collapsed
``<details>`` holding all of it, which a saved notebook keeps.

With ipywidgets the live block is an ``Accordion`` (folding it stays folded
while it updates) and the button works while the cell is still running: its
click is acted on where ipykernel's shell-channel thread routes the message
(:func:`on_click_at_once`), not when the kernel is next idle.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import ipywidgets

#: How much of the thinking the live block shows (and resends per update).
TAIL_CHARS = 1200

_LIVE_TEXT = (
    '<div class="mlx-magic-thinking-text" style="white-space: pre-wrap; max-height: 12em; '
    "overflow-y: auto; display: flex; flex-direction: column-reverse; opacity: 0.75; "
    'font-size: 0.9em; line-height: 1.4"><div>{}</div></div>'
)


def thinking_summary(tokens: int, seconds: float, live: bool = False, note: str = "") -> str:
    """``Thinking · 120 tokens · 3.2 s`` (``…`` while it goes on)."""
    parts = ["Thinking…" if live else "Thinking", f"{tokens:,} tokens", f"{seconds:.1f} s"]
    if note:
        parts.append(note)
    return " · ".join(parts)


def thinking_bundle(text: str, summary: str) -> dict:
    """The finished block: a collapsed ``<details>`` and a plain-text copy."""
    body = html.escape(text.strip())
    return {
        "text/html": (
            '<details class="mlx-magic-thinking"><summary style="cursor: pointer; opacity: 0.8">'
            f"{html.escape(summary)}</summary>"
            '<div class="mlx-magic-thinking-text" style="white-space: pre-wrap; opacity: 0.75; '
            f'font-size: 0.9em; margin: 0.3em 0 0.6em 1em">{body}</div></details>'
        ),
        "text/plain": f"[{summary}]\n{text.strip()}",
    }


def _live_html(text: str, summary: str, with_summary: bool) -> str:
    tail = text[-TAIL_CHARS:]
    shown = ("…" if len(text) > len(tail) else "") + tail.lstrip("\n")
    box = _LIVE_TEXT.format(html.escape(shown))
    if not with_summary:
        return box
    return (
        f'<details class="mlx-magic-thinking" open><summary>{html.escape(summary)}</summary>'
        f"{box}</details>"
    )


class ThinkingBlock:
    """The live block of one cell (display it on the kernel thread).

    Args:
        answer_now: called (from any thread) when "Answer now" is clicked;
            ``None`` shows no button.
        widgets: build the live block from ipywidgets (else plain HTML,
            updated in place, without a button).
    """

    def __init__(self, answer_now: Optional[Callable[[], None]], widgets: bool):
        from IPython.display import display

        self.text = ""
        self.asked = False
        self._answer_now = answer_now
        self._accordion: Any = None
        self._button: Any = None
        summary = thinking_summary(0, 0.0, live=True)
        if widgets:
            import ipywidgets

            self._body = ipywidgets.HTML(value=_live_html("", summary, with_summary=False))
            children = [self._body]
            if answer_now is not None:
                self._button = ipywidgets.Button(
                    description="Answer now",
                    tooltip="End the thinking here: the model answers with what it has",
                    icon="forward",
                )
                # Before any other message of the button's goes out: a frontend
                # may click as soon as it sees one, and a click that comes in
                # before the hook waits for the cell to end.
                on_click_at_once(self._button, self._clicked)
                self._button.add_class("mlx-magic-answer-now")
                children.append(self._button)
            self._accordion = ipywidgets.Accordion(
                children=[ipywidgets.VBox(children)], titles=(summary,), selected_index=0
            )
            self._accordion.add_class("mlx-magic-thinking-live")
            self._handle = display(self._accordion, display_id=True)
        else:
            self._handle = display(self._html_bundle(summary), raw=True, display_id=True)

    def _clicked(self) -> None:
        if not self.asked and self._answer_now is not None:
            self.asked = True
            self._answer_now()

    def _html_bundle(self, summary: str) -> dict:
        return {
            "text/html": _live_html(self.text, summary, with_summary=True),
            "text/plain": f"[{summary}]",
        }

    def update(self, text: str, tokens: int, seconds: float) -> None:
        """More thinking, and the count and time so far."""
        self.text += text
        summary = thinking_summary(tokens, seconds, live=True)
        if self._accordion is None:
            self._handle.update(self._html_bundle(summary), raw=True)
            return
        self._body.value = _live_html(self.text, summary, with_summary=False)
        self._accordion.set_title(0, summary)
        if self.asked and self._button is not None and not self._button.disabled:
            self._button.disabled = True
            self._button.description = "Answering…"

    def finish(self, tokens: int, seconds: float, note: str = "") -> None:
        """The thinking ended: the live block becomes the static, folded one."""
        self._handle.update(
            thinking_bundle(self.text, thinking_summary(tokens, seconds, note=note)), raw=True
        )
        if self._accordion is not None:
            self._accordion.close()


def on_click_at_once(button: ipywidgets.Button, callback: Callable[[], None]) -> None:
    """Call ``callback`` when ``button`` is clicked, even while a cell runs.

    A click is a comm message on the shell channel, which waits while the
    kernel runs a cell (the cell showing the button, here). ipykernel 7
    reads every comm message first on its shell-channel thread and asks the
    comm where to route it (``_reply_subshell_for``): there the click is
    seen at once. The message then goes its usual way; ``on_click`` also
    gets it (later, or at once where the kernel is idle), and ``callback``
    must not mind being called twice.
    """
    button.on_click(lambda _button: callback())
    comm = getattr(button, "comm", None)
    route = getattr(comm, "_reply_subshell_for", None)
    if comm is None or route is None:
        return  # ipykernel < 7: clicks arrive once the kernel is idle

    def route_and_watch(data: object, default: Optional[str]) -> Optional[str]:
        content = data.get("content") if isinstance(data, dict) else None
        if isinstance(content, dict) and content.get("event") == "click":
            callback()
        return route(data, default)

    comm._reply_subshell_for = route_and_watch
