"""The OS threads that own MLX work, kept for the life of the process.

MLX streams are thread-local, so a runtime loads, runs and frees its models
on one thread. A new OS thread per runtime (every ``%reload_ext``) also got a
new glibc malloc arena, and the memory freed in the old one was not reused: a
kernel grew by about 155 MB per reload with SmolLM2 (281 → 1,535 MB over ten,
measured). So a thread that has finished serving one runtime parks, and
serves the next one. Two runtimes alive at once (tests, side-by-side shells)
get two threads.

A parked thread never exits, so MLX's thread-local destructors never race the
interpreter's shutdown (a thread ending just as a script exited used to abort
the process inside C++).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable

#: The name of a parked owner thread (a serving one takes its runtime's name).
IDLE_NAME = "mlx_magic-runtime-idle"

_idle: list[_OwnerThread] = []
_idle_lock = threading.Lock()


@dataclass(frozen=True)
class Serving:
    """A runtime's serve loop running on an owner thread."""

    thread: threading.Thread
    #: Set when the serve loop has returned (the thread is parked again).
    done: threading.Event

    @property
    def running(self) -> bool:
        return not self.done.is_set()


class _OwnerThread:
    def __init__(self) -> None:
        self._work: queue.Queue[tuple[Callable[[], None], str, threading.Event]] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name=IDLE_NAME, daemon=True)
        self.thread.start()

    def assign(self, serve: Callable[[], None], name: str) -> Serving:
        done = threading.Event()
        self._work.put((serve, name, done))
        return Serving(self.thread, done)

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            serve, name, done = self._work.get()
            me.name = name
            try:
                serve()
            finally:
                me.name = IDLE_NAME
                with _idle_lock:
                    _idle.append(self)
                done.set()


def serve_on_an_owner_thread(serve: Callable[[], None], name: str) -> Serving:
    """Run ``serve`` (a runtime's loop) on a parked owner thread, or a new one."""
    with _idle_lock:
        owner = _idle.pop() if _idle else None
    if owner is None:
        owner = _OwnerThread()
    return owner.assign(serve, name)
