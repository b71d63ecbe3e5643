"""A running generation as its caller holds it: the queue its events arrive in,
and the flags the runtime and the display share (cancelled, first text shown,
ended). The one value of the interface that is not plain data."""

from __future__ import annotations

import queue
import threading
from typing import Optional, Protocol

from mlx_magic.vocabulary.values import Event, Failed, Finished, GenerationRequest, ThinkingCanEnd


class JobControls(Protocol):
    """What the engine reads of a job, and all it sees of one: its request and
    the flags its caller sets (a cancel, "Answer now"). The engine hands its
    events back as values, step by step; the runtime holds the :class:`Job`
    and puts them in it."""

    request: GenerationRequest

    @property
    def cancelled(self) -> bool: ...

    @property
    def thinking_end_requested(self) -> bool: ...


class Job:
    """A running generation as the caller sees it: a stream of events and a
    way to cancel it.

    The runtime puts events into ``events``; the caller reads them (see
    :meth:`next_event`) and may call :meth:`cancel` from any thread. The last
    event of every job is a :class:`Finished` or a :class:`Failed`.
    """

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.events: "queue.Queue[Event]" = queue.Queue()
        self._cancel = threading.Event()
        #: Set by whoever shows the answer once its first text is out (on
        #: screen, or written to the worker's pipe); see :mod:`mlx_magic.engine.stepping`.
        self.first_text_shown = threading.Event()
        #: Set once the last event (a Finished or a Failed) is in ``events``.
        self.ended = threading.Event()
        #: Whether the generation can end its thinking block on request
        #: (:meth:`end_thinking`; the "Answer now" button is shown only then):
        #: set by the :class:`ThinkingCanEnd` event.
        self.thinking_can_end = False
        self._end_thinking = threading.Event()

    def cancel(self) -> None:
        """Ask the runtime to stop at the next token step."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def end_thinking(self) -> None:
        """Ask the runtime to close the thinking block now ("Answer now")."""
        self._end_thinking.set()

    @property
    def thinking_end_requested(self) -> bool:
        return self._end_thinking.is_set()

    def wait_for_first_text(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for whoever shows the answer to put out its first text."""
        self.first_text_shown.wait(timeout)

    def emit(self, event: Event) -> None:
        if isinstance(event, ThinkingCanEnd):
            self.thinking_can_end = True
        self.events.put(event)
        if isinstance(event, (Finished, Failed)):
            self.ended.set()

    def waiting_events(self) -> list:
        """The events already queued (without waiting)."""
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or ``None`` if none came within ``timeout`` s."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None
