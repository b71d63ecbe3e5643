"""Route a job's text: the thinking to the view's "Thinking" block, the answer
back to the collector that shows it.

Thinking arrives as inline ``<think> … </think>`` text (local models, and
servers that pass it through) or as a server's separate reasoning deltas
(:attr:`~mlx_magic.vocabulary.values.TokenChunk.thinking`). It is buffered like
the answer (its own :class:`~mlx_magic.vocabulary.token_buffer.TokenBuffer`) and
counted apart from it: tokens, and the time from its first token to its end.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from mlx_magic.display.views import StreamView
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.thinking import ANSWER, START, THINKING, ThinkingSplitter
from mlx_magic.vocabulary.token_buffer import TokenBuffer
from mlx_magic.vocabulary.values import TokenChunk


class ThinkingStream:
    """The thinking of one job, as it streams.

    Args:
        job: the job (its "Answer now" request and first-text flag).
        view: where the thinking is shown.
        buffer: batches the thinking text (``None``: every piece at once).
    """

    def __init__(
        self,
        job: Job,
        view: StreamView,
        buffer: Optional[TokenBuffer],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.job = job
        self.view = view
        self.buffer = buffer
        self._clock = clock
        self.splitter = ThinkingSplitter()
        self.parts: list[str] = []
        self.tokens = 0
        self._undecided = 0  # tokens before it is known whether a block opens
        self._first_at: Optional[float] = None
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self._shown = False

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    @property
    def seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or self._clock()) - self.started_at

    @property
    def active(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def opened(self) -> None:
        """The prompt opened the block: the text starts inside it."""
        if self.splitter.state == START and not self.parts:
            self.splitter = ThinkingSplitter(opened=True)

    def take(self, chunk: TokenChunk) -> str:
        """Route ``chunk``; returns its answer text (may be empty)."""
        count = len(chunk.token_ids) or 1  # a server's chunks carry no ids
        now = self._clock()
        if chunk.thinking:
            self.tokens += count
            if self.started_at is None:
                self.started_at = now
            self._think(chunk.text)
            return ""
        before = self.splitter.state
        if before == START and self._first_at is None:
            self._first_at = now
        pieces = self.splitter.feed(chunk.text)
        if self.splitter.saw_thinking and self.started_at is None:
            # Timed from the block's first token (its tag's, where it has one).
            self.started_at = self._first_at if before == START else now
        if before == THINKING:
            self.tokens += count
        elif before == START:
            if self.splitter.state == START:
                self._undecided += count
            elif self.splitter.saw_thinking:
                self.tokens += self._undecided + count
        answer = []
        for thinking, piece in pieces:
            if thinking:
                self._think(piece)
            else:
                answer.append(piece)
        if answer or (self.splitter.state == ANSWER and self.active):
            self.end()
        return "".join(answer)

    def flush(self) -> str:
        """The text ended: what was held back; returns its answer part."""
        answer = []
        for thinking, piece in self.splitter.flush():
            if thinking:
                self._think(piece)
            else:
                answer.append(piece)
        self.end()
        return "".join(answer)

    def _think(self, text: str) -> None:
        if self.started_at is None:
            self.started_at = self._clock()
        if not text:
            return
        self.parts.append(text)
        if self.buffer is None:
            self._show(text)
        else:
            self._show(self.buffer.add(text))

    def due(self) -> None:
        """Show the held thinking if it has waited long enough."""
        if self.buffer is not None and self.active:
            self._show(self.buffer.due())

    def seconds_until_due(self) -> Optional[float]:
        return self.buffer.seconds_until_due() if self.buffer is not None else None

    def _show(self, text: Optional[str]) -> None:
        if not text:
            return
        answer_now = self.job.end_thinking if self.job.thinking_can_end else None
        self.view.think(text, self.tokens, self.seconds, answer_now)
        self._shown = True
        self.job.first_text_shown.set()

    def end(self) -> None:
        """The thinking is over (the answer began, or the text ended)."""
        if not self.active:
            return
        if self.buffer is not None:
            self._show(self.buffer.flush())
        self.ended_at = self._clock()
        if self._shown:
            note = ""
            if self.job.thinking_end_requested:
                note = "ended by Answer now"
            elif self.job.request.think_budget is not None and (
                self.tokens >= self.job.request.think_budget
            ):
                note = f"budget of {self.job.request.think_budget:,} tokens"
            self.view.thinking_done(self.text, self.tokens, self.seconds, note)
