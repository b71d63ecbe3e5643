"""A streamed answer rendered as Markdown in a notebook cell.

Each block of the answer (see :mod:`mlx_magic.display.markdown_blocks`) is a
display output of its own, with a display id: a finished block is sent once,
with ``text/markdown`` and a ``text/plain`` copy (what a saved notebook,
nbconvert and GitHub show); the open block is updated in place at each flush
of the token buffer, as ``text/markdown`` only, until it is finished. The
frontend renders it: headings, lists, tables, code with its highlighting,
math.
"""

from __future__ import annotations

from typing import Any, Callable

from mlx_magic.display.markdown_blocks import Joined, MarkdownBlocks, Segment


def open_limit(chars_per_write: float) -> int:
    """How long the open block may grow, given how much text each update
    brings. Every update resends the open block: its average (half the
    limit, plus JSON escapes and framing) must stay within what the
    benchmark allows an update (512 B plus three times the new text), even
    for a slow model that adds a few characters per update; a fast model's
    blocks may grow longer, as they get few updates."""
    return min(1024, max(640, int(chars_per_write) + 600))


def closed_inline(markdown: str) -> str:
    """The open block as it is shown while it streams: bold (``**``) or
    inline code left open at its end is closed (or, if nothing follows the
    opener yet, the opener is held back), so that half a phrase does not show
    its raw markers until the model closes them. Not inside code blocks."""
    if markdown.lstrip().startswith(("```", "~~~")):
        return markdown
    for marker in ("`", "**"):
        if markdown.count(marker) % 2:
            opener = markdown.rfind(marker)
            if markdown[opener + len(marker) :].strip():
                markdown += marker
            else:
                markdown = markdown[:opener].rstrip(" ")
    if markdown.endswith("*") and markdown.replace("**", "").count("*") % 2:
        markdown = markdown[:-1].rstrip(" ")  # an opener, or half of a "**" to come
    return markdown


def _display(bundle: dict) -> Any:
    from IPython.display import display

    return display(bundle, raw=True, display_id=True)


class MarkdownStream:
    """The outputs of one answer: one per block.

    Args:
        show: displays a bundle and returns its handle (tests pass their own).
    """

    def __init__(
        self, show: Callable[[dict], Any] = _display, blocks: MarkdownBlocks | None = None
    ):
        self._show = show
        self._blocks = blocks or MarkdownBlocks()
        self._handles: dict[int, Any] = {}
        self._sent: dict[int, dict] = {}
        self.text = ""
        self._writes = 0

    def write(self, text: str) -> None:
        """More of the answer: finished blocks go out, the open one is updated."""
        self.text += text
        self._writes += 1
        self._blocks.max_open = open_limit(len(self.text) / self._writes)
        for done in self._blocks.add(text):
            self._send(done)
        self._put(self._blocks.open, final=False)

    def finish(self) -> None:
        """The answer is complete (or was stopped): every block is final."""
        for done in self._blocks.finish():
            self._send(done)

    def _send(self, done: Segment | Joined) -> None:
        if isinstance(done, Segment):
            self._put(done, final=True)
            return
        self._put(Segment(done.first, done.text), final=True)
        for index in range(done.first + 1, done.last + 1):
            if index in self._handles:
                self._update(index, {"text/markdown": "", "text/plain": ""})

    def _put(self, segment: Segment, final: bool) -> None:
        if not segment.text.strip():
            return  # blank lines between blocks: nothing to show
        # Blank lines at either end change nothing in Markdown: not sent.
        markdown = segment.markdown.strip("\n")
        bundle = {"text/markdown": markdown if final else closed_inline(markdown)}
        if final and not segment.joined:  # a joined part's copy comes with the whole
            bundle["text/plain"] = segment.text.strip("\n")
        if segment.index not in self._handles:
            self._handles[segment.index] = self._show(bundle)
            self._sent[segment.index] = bundle
        else:
            self._update(segment.index, bundle)

    def _update(self, index: int, bundle: dict) -> None:
        if self._sent.get(index) == bundle:
            return
        self._handles[index].update(bundle, raw=True)
        self._sent[index] = bundle
