"""Where a streamed answer is shown: a notebook cell or a terminal.

In a notebook the answer is rendered as Markdown while it streams, one
display output per block (:mod:`mlx_magic.display.markdown_view`); with
``--format text`` it goes out as the cell's own stdout stream instead. Either
way each flush sends only what changed (the new text; the open block), so
traffic grows linearly with the answer; an ``ipywidgets.Output`` would resend
its whole output list on every append (traffic growing with the square of
the text). Both are what a saved notebook, nbconvert and every frontend show
without live widgets. Status (loading, reading the prompt), a reasoning
model's "Thinking" block (:mod:`mlx_magic.display.thinking_view`) and the
stats footer are separate display outputs; the status line updates in place.

In terminal IPython tokens are printed as they come.
"""

from __future__ import annotations

import html
import importlib
import sys
import threading
from typing import TYPE_CHECKING, Callable, Optional, Sequence, TextIO

from mlx_magic.display.result import MLXResult, footer_html
from mlx_magic.vocabulary.provenance import record_to_save
from mlx_magic.vocabulary.token_buffer import MAX_BATCH_TOKENS

if TYPE_CHECKING:
    from mlx_magic.display.markdown_view import MarkdownStream
    from mlx_magic.display.preview_output import PreviewOutput
    from mlx_magic.display.thinking_view import ThinkingBlock
    from mlx_magic.grounding import Grounding
    from mlx_magic.grounding.marks import Mark
    from mlx_magic.images import LoadedImage
    from mlx_magic.vocabulary.values import VideoPrepared


class StreamView:
    """The interface the magics stream into."""

    #: Whether tokens should be batched (a frontend pays per message).
    batches = True

    def max_batch_tokens(self) -> int:
        """The largest batch: a fast model's text is sent this many tokens at
        a time (or once per interval, whichever comes first)."""
        return MAX_BATCH_TOKENS

    #: Render the answer as Markdown while it streams (notebook frontends;
    #: ``--format text`` streams plain text).
    markdown = False

    def show_images(self, images: Sequence[LoadedImage], marks: Sequence[Mark] = ()) -> None:
        """Previews of the images sent, before the answer (``marks``: those sent, numbered)."""

    def previews_output(self) -> Optional[PreviewOutput]:
        """The previews as shown (a notebook's; drawn on where widgets show)."""
        return None

    def name_marks(self, numbers: Sequence[int]) -> None:
        """The answer named these marks: make them stand out on the previews."""

    def notice(self, message: str) -> None:
        """A one-line notice from the runtime (e.g. turns dropped)."""

    def show_bundle(self, bundle: dict) -> None:
        """An extra output after the answer (e.g. token probabilities)."""

    def image_costs(self, processed_sizes: tuple, vision_tokens: tuple) -> None:
        """The size each image was resized to and the tokens it became."""

    def show_grounding(self, grounding: Grounding) -> None:
        """Boxes and points found in the answer so far: draw them on the previews."""

    def show_video(self, video: VideoPrepared) -> None:
        """The frames sampled from a video (a ``VideoPrepared``), with their times."""

    def loading(self, model: str) -> None:
        """The model is cold and is being loaded."""

    def waiting_for_first_token(self, model: str, loaded_in: Optional[float]) -> None:
        """The model is ready; the prompt is being read."""

    def progress(self, message: str) -> None:
        """Before the first token: what the generation waits for, in place."""

    def write(self, text: str) -> None:
        """Show more of the answer."""

    def think(
        self, text: str, tokens: int, seconds: float, answer_now: Optional[Callable[[], None]]
    ) -> None:
        """More of a reasoning model's thinking, with its token count and time
        so far; ``answer_now`` (if given) ends the thinking on request."""

    def thinking_done(self, text: str, tokens: int, seconds: float, note: str = "") -> None:
        """The thinking ended (``text`` is all of it); the answer follows."""

    def finish(self, result: MLXResult) -> None:
        """The answer is complete (or was cancelled): show the footer."""

    def fail(self) -> None:
        """The generation failed; the error is raised by the caller."""


class NotebookView(StreamView):
    """Streams into the running cell's output (Jupyter, VS Code, nbclient)."""

    def __init__(self, shell: object = None) -> None:
        self._shell = shell
        self._status = None
        self._ends_with_newline = True
        self._wrote = False
        self.previews: Optional[PreviewOutput] = None
        self._answer: Optional[MarkdownStream] = None  # once the answer begins
        self._thinking: Optional[ThinkingBlock] = None  # once the thinking begins

    def show_images(self, images: Sequence[LoadedImage], marks: Sequence[Mark] = ()) -> None:
        from mlx_magic.display.preview_output import PreviewOutput, drawing_usable

        # Updated in place when the costs are known and as boxes complete.
        self.previews = PreviewOutput(images, drawable=drawing_usable(self._shell), marks=marks)
        self.previews.show()

    def previews_output(self) -> Optional[PreviewOutput]:
        return self.previews

    def name_marks(self, numbers: Sequence[int]) -> None:
        if self.previews is not None:
            self.previews.name(numbers)

    def show_video(self, video: VideoPrepared) -> None:
        from IPython.display import display

        from mlx_magic.display.previews import video_strip_bundle

        if video.frames:
            display(video_strip_bundle(video.source, video.frames, video.timestamps), raw=True)

    def image_costs(self, processed_sizes: tuple, vision_tokens: tuple) -> None:
        from mlx_magic.display.previews import image_caption

        if self.previews is not None:
            self.previews.captions = [
                image_caption(loaded, size, tokens)
                for loaded, size, tokens in zip(
                    self.previews.images, processed_sizes, vision_tokens
                )
            ]
            self.previews.update()

    def show_grounding(self, grounding: Grounding) -> None:
        if self.previews is not None:
            self.previews.grounding = grounding
            self.previews.update()

    def show_bundle(self, bundle: dict) -> None:
        from IPython.display import display

        display(bundle, raw=True)

    def notice(self, message: str) -> None:
        from IPython.display import display

        display(
            {
                "text/plain": f"[{message}]",
                "text/html": f'<div class="mlx-magic-notice"><em>{html.escape(message)}</em></div>',
            },
            raw=True,
        )

    def loading(self, model: str) -> None:
        self._set_status(f"Loading {model} (first use in this kernel)…")

    def waiting_for_first_token(self, model: str, loaded_in: Optional[float]) -> None:
        if loaded_in is not None:
            self._set_status(f"✓ Loaded {model} in {loaded_in:.1f} s; reading the prompt…")
        else:
            self._set_status(f"{model} is reading the prompt…")

    def progress(self, message: str) -> None:
        self._set_status(message)

    def write(self, text: str) -> None:
        if not text:
            return
        first = not self._wrote
        if first:
            self._wrote = True
            self._clear_status()
        if self.markdown:
            if self._answer is None:
                from mlx_magic.display.markdown_view import MarkdownStream

                self._answer = MarkdownStream()
            self._answer.write(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._ends_with_newline = text.endswith("\n")
        if first:
            _wait_until_sent(sys.stdout)

    def think(
        self, text: str, tokens: int, seconds: float, answer_now: Optional[Callable[[], None]]
    ) -> None:
        if self._thinking is None:
            from mlx_magic.display.thinking_view import ThinkingBlock

            self._clear_status()
            widgets = widgets_usable(self._shell, warn=False)
            self._thinking = ThinkingBlock(answer_now if widgets else None, widgets=widgets)
            _wait_until_sent(sys.stdout)
        self._thinking.update(text, tokens, seconds)

    def thinking_done(self, text: str, tokens: int, seconds: float, note: str = "") -> None:
        if self._thinking is not None:
            self._thinking.finish(tokens, seconds, note)

    def finish(self, result: MLXResult) -> None:
        from IPython.display import display

        self._clear_status()
        if self._answer is not None:
            self._answer.finish()
        if not self._ends_with_newline:
            sys.stdout.write("\n")
            sys.stdout.flush()
        if (result.boxes or result.points) and self.previews is not None:
            from mlx_magic.display.previews import grounding_metadata, grounding_of

            # The items as data in the saved notebook, beside the drawing.
            self.previews.grounding = grounding_of(result)
            self.previews.update(metadata=grounding_metadata(result))
        # The footer carries the answer's provenance: the saved notebook keeps it,
        # and %mlx replay notebook.ipynb:CELL reads it back.
        saved = record_to_save(result.provenance) if result.provenance else None
        metadata = {"mlx_magic": {"provenance": saved}} if saved else None
        display(
            {"text/plain": f"[{result.footer}]", "text/html": footer_html(result.footer)},
            raw=True,
            metadata=metadata,
        )

    def fail(self) -> None:
        self._clear_status()
        if self._answer is not None:
            self._answer.finish()
        if not self._ends_with_newline:
            sys.stdout.write("\n")
            sys.stdout.flush()

    def _set_status(self, message: str) -> None:
        from IPython.display import display

        bundle = {
            "text/plain": message,
            "text/html": f'<span class="mlx-magic-status">{html.escape(message)}</span>',
        }
        if self._status is None:
            self._status = display(bundle, raw=True, display_id=True)
        else:
            self._status.update(bundle, raw=True)

    def _clear_status(self) -> None:
        if self._status is not None:
            self._status.update({"text/plain": ""}, raw=True)
            self._status = None


class TerminalView(StreamView):
    """Prints tokens as they come (terminal IPython, plain Python)."""

    batches = False

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = stream
        self._ends_with_newline = True

    @property
    def out(self) -> TextIO:
        # Looked up at each write so that capture (pytest, %%capture) works.
        return self._stream or sys.stdout

    def notice(self, message: str) -> None:
        print(f"[{message}]", file=self.out, flush=True)

    def show_bundle(self, bundle: dict) -> None:
        print(bundle["text/plain"], file=self.out, flush=True)

    def show_images(self, images: Sequence[LoadedImage], marks: Sequence[Mark] = ()) -> None:
        for index, loaded in enumerate(images, 1):
            print(f"[image {index}: {loaded.caption}]", file=self.out, flush=True)
        for mark in marks:
            print(f"[{mark}]", file=self.out, flush=True)

    def loading(self, model: str) -> None:
        print(f"[loading {model}…]", file=self.out, flush=True)

    def show_video(self, video: VideoPrepared) -> None:
        from mlx_magic.display.previews import video_strip_bundle

        if video.frames:
            self._erase_transient()
            text = video_strip_bundle(video.source, video.frames, video.timestamps)["text/plain"]
            print(text, file=self.out, flush=True)

    def waiting_for_first_token(self, model: str, loaded_in: Optional[float]) -> None:
        # A line that the first token erases, where the terminal can do that.
        if _is_terminal(self.out):
            print("[reading the prompt…]", end="", file=self.out, flush=True)
            self._transient = True

    def progress(self, message: str) -> None:
        if _is_terminal(self.out):
            self._erase_transient()
            print(f"[{message}]", end="", file=self.out, flush=True)
            self._transient = True

    def _erase_transient(self) -> None:
        if getattr(self, "_transient", False):
            print("\r\033[K", end="", file=self.out, flush=True)
            self._transient = False

    def write(self, text: str) -> None:
        if text:
            self._erase_transient()
            print(text, end="", file=self.out, flush=True)
            self._ends_with_newline = text.endswith("\n")

    def think(
        self, text: str, tokens: int, seconds: float, answer_now: Optional[Callable[[], None]]
    ) -> None:
        if not getattr(self, "_thinking", False):
            self._erase_transient()
            self._thinking = True
            print("[thinking…]", file=self.out, flush=True)
        self.write(text)

    def thinking_done(self, text: str, tokens: int, seconds: float, note: str = "") -> None:
        from mlx_magic.display.thinking_view import thinking_summary

        if not self._ends_with_newline:
            print(file=self.out)
        print(f"[{thinking_summary(tokens, seconds, note=note)}]", file=self.out, flush=True)
        self._ends_with_newline = True

    def finish(self, result: MLXResult) -> None:
        from mlx_magic.display.previews import grounding_lines, grounding_of

        self._erase_transient()
        if not self._ends_with_newline:
            print(file=self.out)
        if result.boxes or result.points:
            print("\n".join(grounding_lines(grounding_of(result))), file=self.out)
        print(f"[{result.footer}]", file=self.out, flush=True)

    def fail(self) -> None:
        self._erase_transient()
        if not self._ends_with_newline:
            print(file=self.out, flush=True)


class CollectingView(StreamView):
    """Shows nothing while streaming; side-by-side columns in a terminal are
    printed one after the other once all are done."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_warned_about_widgets = False


def widgets_usable(shell: object, warn: bool = True) -> bool:
    """Whether live widgets can be shown: a Jupyter kernel with ipywidgets.

    Without ipywidgets, one warning (unless ``warn`` is false) says what to
    install, and callers fall back to plain streamed text.
    """
    global _warned_about_widgets
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        if warn and not _warned_about_widgets:
            _warned_about_widgets = True
            import warnings

            warnings.warn(
                "mlx_magic shows background jobs and side-by-side columns live with "
                "ipywidgets: pip install ipywidgets. Falling back to plain text.",
                stacklevel=3,
            )
        return False
    return True


def view_for(shell: object) -> StreamView:
    """A notebook view inside a Jupyter kernel, a terminal view elsewhere."""
    if getattr(shell, "kernel", None) is not None:
        return NotebookView(shell)
    return TerminalView()


def _wait_until_sent(stream: TextIO, timeout_s: float = 0.05) -> None:
    """Wait until ipykernel's IOPub thread has really sent what ``stream`` flushed.

    ipykernel's ``flush()`` returns once the message is *queued* on its IOPub
    thread; the runtime then takes the CPU back for the next token and the
    first text left the kernel 45-60 ms late in half of the cells (SmolLM2,
    measured). A marker scheduled on that thread now runs after the queued
    send, so waiting for it means the text is on its way.
    """
    pub_thread = getattr(stream, "pub_thread", None)
    thread = getattr(pub_thread, "thread", None)
    if (
        pub_thread is None
        or thread is None
        or not thread.is_alive()
        or thread is threading.current_thread()
    ):
        return
    sent = threading.Event()
    pub_thread.schedule(sent.set)
    sent.wait(timeout_s)
