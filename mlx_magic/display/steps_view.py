"""The steps of a tool-using cell (``%%mlx --tools``), shown as they happen.

Each call the model makes gets a line in the cell: the call as Python would
write it, then (unless ``--auto``) **Run** / **Skip** buttons that the kernel
waits on, then its result, shortened, and how long it ran. The line is a
display with an id, updated in place, so a saved notebook keeps each step as
text; the buttons are ipywidgets, acted on while the cell runs
(:func:`~mlx_magic.display.thinking_view.on_click_at_once`). Outside a kernel
(terminal IPython) each step is printed.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.vocabulary.tools import ToolStep, call_text

if TYPE_CHECKING:
    import ipywidgets

#: How often the wait for a click wakes up, so that an interrupt lands at once.
_WAIT_S = 0.1

_MARKS = {
    "asked": "?",
    "ran": "✓",
    "failed": "✖",
    "skipped": "–",
    "refused": "✖",
    "invalid": "✖",
    "timed out": "⏱",
    "interrupted": "■",
}


def prompt_bundle(text: str) -> dict:
    """``--show-prompt``: the prompt as the chat template rendered it, tools and all."""
    title = f"Prompt as the chat template rendered it ({len(text):,} characters)"
    return {
        "text/plain": f"── {title} ──\n{text}\n── end of prompt ──",
        "text/html": (
            f'<details class="mlx-magic-prompt"><summary>{html.escape(title)}</summary>'
            '<pre style="white-space: pre-wrap; font-size: 0.85em">'
            f"{html.escape(text)}</pre></details>"
        ),
    }


def step_line(step: ToolStep, note: str = "") -> str:
    """``✓ step 1 · add(a=2, b=3) → 5 · 0.01 s``: a step in one line."""
    text = f"{_MARKS[step.state]} step {step.step} · {call_text(step.name, step.arguments)}"
    if note:
        return f"{text} · {note}"
    if step.state == "asked":
        return text
    text += f" → {step.summary()}"
    if step.state in ("ran", "failed", "timed out"):
        text += f" · {step.seconds:.2f} s"
    return text


def step_bundle(step: ToolStep, note: str = "") -> dict:
    line = step_line(step, note)
    return {
        "text/plain": f"[{line}]",
        "text/html": (
            '<div class="mlx-magic-step" style="font-family: monospace; margin: 0.3em 0">'
            f"{html.escape(line)}</div>"
        ),
    }


def clicks_reach_a_running_cell() -> bool:
    """Whether a button's click is seen while its cell still runs: ipykernel 7
    reads comm messages on its shell-channel thread and asks the comm where to
    route them (``_reply_subshell_for``); older kernels hold them until the cell
    ends, so a cell waiting for Run / Skip would wait for ever."""
    try:
        from ipykernel.comm import Comm
    except ImportError:
        return False
    return hasattr(Comm, "_reply_subshell_for")


class StepView:
    """One step's line in the cell (built and updated on the kernel thread).

    Args:
        step: the step (its state and result are read at each update).
        in_kernel: a notebook kernel (a display updated in place); else printed.
        buttons: show Run / Skip and let :meth:`decide` wait for a click.
    """

    def __init__(self, step: ToolStep, *, in_kernel: bool, buttons: bool = False) -> None:
        self.step = step
        self._handle: Any = None
        self._buttons: Optional[ipywidgets.HBox] = None
        self._choice: Optional[bool] = None
        self._clicked = threading.Event()
        if not in_kernel:
            return
        from IPython.display import display

        note = "waiting for Run or Skip" if buttons else ""
        self._handle = display(step_bundle(step, note), raw=True, display_id=True)
        if buttons:
            self._buttons = self._make_buttons()
            display(self._buttons)

    def _make_buttons(self) -> ipywidgets.HBox:
        import ipywidgets

        from mlx_magic.display.thinking_view import on_click_at_once

        run = ipywidgets.Button(description="Run", button_style="success", icon="play")
        skip = ipywidgets.Button(description="Skip", icon="forward")
        on_click_at_once(run, lambda: self.choose(True))
        on_click_at_once(skip, lambda: self.choose(False))
        return ipywidgets.HBox([run, skip])

    def choose(self, run: bool) -> None:
        """The user's answer (a click; any thread); the first one counts."""
        if self._choice is None:
            self._choice = run
        self._clicked.set()

    def decide(self) -> bool:
        """Wait for Run (True) or Skip (False); an interrupt lands here."""
        while not self._clicked.wait(_WAIT_S):
            pass
        self._close_buttons()
        return bool(self._choice)

    def running(self) -> None:
        self._close_buttons()
        self._update("running…")

    def done(self) -> None:
        """The step ended (its state says how): its line shows the result."""
        self._close_buttons()
        self._update()

    def _update(self, note: str = "") -> None:
        if self._handle is not None:
            self._handle.update(step_bundle(self.step, note), raw=True)
        elif not note:
            print(step_line(self.step), flush=True)

    def _close_buttons(self) -> None:
        if self._buttons is not None:
            for child in self._buttons.children:
                child.close()
            self._buttons.close()
            self._buttons = None
