"""A live view for background jobs: ipywidgets that keep updating after the cell ends.

A finished cell cannot receive new outputs, but its widgets can still change:
the widget manager routes updates by widget, not by cell. Setting a widget's
value resends all of it, so to keep traffic linear in the answer's length the
text is split into segments of bounded size, each its own ``HTML`` widget: an
update resends one segment (at most ``segment_chars``), never the whole
answer. Segments share one layout and one style widget (a widget of its own
would be opened with every segment), and are grouped in pages of
``PAGE_SEGMENTS``, so that adding a segment resends a short list of children.
"""

from __future__ import annotations

import html
import threading
from typing import Any, Callable, Optional

from mlx_magic.display.result import MLXResult, footer_html
from mlx_magic.display.views import StreamView

_PRE = '<pre class="mlx-magic-text" style="white-space: pre-wrap; margin: 0">{}</pre>'
SEGMENT_CHARS = 512
PAGE_SEGMENTS = 16


class WidgetStreamView(StreamView):
    """Streams into a box of text segments, a status line and a footer.

    Safe to feed from a thread other than the kernel's.
    """

    def __init__(self, title: str, segment_chars: int = SEGMENT_CHARS, heading: bool = False):
        import ipywidgets as widgets

        self._widgets = widgets
        self._segment_chars = segment_chars
        self._lock = threading.Lock()
        self._status = widgets.HTML(value=self._status_html(f"{title}: queued"))
        self._segments = widgets.VBox([])  # pages, each a VBox of segments
        self._page: Any = None  # the ipywidgets.VBox being filled
        self._shared = {
            "layout": widgets.Layout(margin="0"),
            "style": widgets.widgets.widget_string.HTMLStyle(),
        }
        self._footer = widgets.HTML(value="")
        parts = [self._status, self._segments, self._footer]
        if heading:
            parts.insert(0, widgets.HTML(value=f"<b>{html.escape(title)}</b>"))
        self.box = widgets.VBox(parts)
        self._current: Any = None  # the ipywidgets.HTML segment being filled
        self._current_text = ""
        self.text = ""
        self._handle = None

    def display(self) -> None:
        """Show the view in the current cell (call on the kernel thread)."""
        from IPython.display import display

        self._handle = display(self.box, display_id=True)

    def set_status(self, message: str) -> None:
        self._status.value = self._status_html(message)

    def loading(self, model: str) -> None:
        self.set_status(f"Loading {model}…")

    def notice(self, message: str) -> None:
        self.set_status(message)

    def progress(self, message: str) -> None:
        self.set_status(message)

    def waiting_for_first_token(self, model: str, loaded_in: Optional[float]) -> None:
        self.set_status(f"{model} is reading the prompt…")

    def write(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self._current is None:
                self.set_status("")
            self.text += text
            while text:
                if self._current is None or len(self._current_text) >= self._segment_chars:
                    self._new_segment()
                room = self._segment_chars - len(self._current_text)
                piece, text = text[:room], text[room:]
                self._current_text += piece
                self._current.value = _PRE.format(html.escape(self._current_text))

    def think(
        self, text: str, tokens: int, seconds: float, answer_now: Optional[Callable[[], None]]
    ) -> None:
        # Only the count and time: the thinking itself is in _mlx.thinking.
        from mlx_magic.display.thinking_view import thinking_summary

        self.set_status(thinking_summary(tokens, seconds, live=True))

    def thinking_done(self, text: str, tokens: int, seconds: float, note: str = "") -> None:
        from mlx_magic.display.thinking_view import thinking_summary

        self.set_status(thinking_summary(tokens, seconds, note=note))

    def _new_segment(self) -> None:
        widgets = self._widgets
        if self._page is None or len(self._page.children) >= PAGE_SEGMENTS:
            self._page = widgets.VBox([], layout=self._shared["layout"])
            self._segments.children = self._segments.children + (self._page,)
        self._current = widgets.HTML(value="", **self._shared)
        self._current_text = ""
        self._page.children = self._page.children + (self._current,)

    def finish(self, result: MLXResult) -> None:
        self.set_status("")
        self._footer.value = footer_html(result.footer)
        if self._handle is not None:
            # Frontends that route display updates to a finished cell swap
            # the live widget for static output, which a saved notebook keeps;
            # the others keep showing the (complete) widget.
            self._handle.update(
                {
                    "text/plain": f"{result.text}\n[{result.footer}]",
                    "text/html": _PRE.format(html.escape(result.text)) + footer_html(result.footer),
                },
                raw=True,
            )

    def fail(self) -> None:
        self.set_status("✖ failed")

    @staticmethod
    def _status_html(message: str) -> str:
        if not message:
            return ""
        return f'<span class="mlx-magic-status">{html.escape(message)}</span>'


class ColumnsView:
    """Columns that stream side by side (``%%mlx -m A -m B``), one
    :class:`WidgetStreamView` each; when all are done the live widgets are
    replaced by static HTML, so a saved notebook shows the answers."""

    def __init__(self, titles: list[str]):
        import ipywidgets as widgets

        self.columns = [WidgetStreamView(title, heading=True) for title in titles]
        for column in self.columns:
            column.box.layout = widgets.Layout(flex="1 1 0", min_width="12em")
        self.box = widgets.HBox([column.box for column in self.columns])

    def display(self) -> None:
        from IPython.display import display

        self._handle = display(self.box, display_id=True)

    def finish(self, columns: list[tuple[str, str, str]]) -> None:
        """Replace the live columns, in place, by their final static form."""
        from mlx_magic.display.result import columns_html

        self._handle.update(
            {
                "text/html": columns_html(columns),
                "text/plain": "\n\n".join(
                    f"── {title} ──\n{text}\n[{footer}]" for title, text, footer in columns
                ),
            },
            raw=True,
        )
        self.box.close()
