"""What the thread runtime's owner thread takes from its queue: generations
(one :class:`~mlx_magic.vocabulary.job.Job`, or :class:`Together`), control
calls (:class:`Call`: load, unload, ...), and :data:`STOP`."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import Failed

#: Put last by ``stop()``: the owner thread frees the models and parks.
STOP = object()


class Call:
    """A control request (load, unload, ...) run on the owner thread.

    Its caller may stop waiting (an interrupt): a call not begun by then is
    withdrawn, and never runs later behind the caller's back.
    """

    def __init__(self, function: Callable[[], Any]):
        self.function = function
        self.reply: "queue.Queue[tuple[bool, Any]]" = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._begun = False
        self._withdrawn = False

    def begin(self) -> bool:
        """On the owner thread: whether to run it (false once withdrawn)."""
        with self._lock:
            self._begun = not self._withdrawn
            return self._begun

    def withdraw(self) -> bool:
        """On the caller's thread: withdraw it; false if it has begun already."""
        with self._lock:
            self._withdrawn = not self._begun
            return self._withdrawn


class Together:
    """Jobs to interleave token by token."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs


def refuse(item: Any) -> None:
    """Answer a queued request that a stopped runtime will not run."""
    if isinstance(item, Call):
        item.reply.put((False, RuntimeError("the mlx_magic runtime was stopped")))
    else:
        for job in item.jobs if isinstance(item, Together) else [item]:
            job.emit(Failed("the mlx_magic runtime was stopped", user_error=True))
