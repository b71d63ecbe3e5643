"""Interrupts after the first: held until the partial answer is kept.

The first kernel interrupt (a ``KeyboardInterrupt`` on the kernel thread)
cancels the generation; what follows (waiting for the runtime to confirm,
keeping the partial answer in ``_mlx``, the footer) must not be cut short by
a second one, or the answer is lost and a raw traceback shows. Hammering the
stop button sends several within a few milliseconds.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional


class InterruptShield:
    """While held, SIGINT only counts; :meth:`release` restores the handler.

    Only the main thread can change signal handlers; elsewhere (background
    jobs) no interrupt arrives anyway, so the shield does nothing there.
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None
        self._held = False

    def hold(self) -> InterruptShield:
        if threading.current_thread() is threading.main_thread() and not self._held:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._count)
            self._held = True
        return self

    def release(self) -> None:
        if self._held:
            signal.signal(signal.SIGINT, self._previous)
            self._held = False

    def _count(self, signum: int, frame: Optional[FrameType]) -> None:
        self.count += 1


NO_SHIELD = InterruptShield()
