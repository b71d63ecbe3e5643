"""The one loop that reads running jobs' events, on the kernel's own thread.

Every way a cell consumes generations (one answer, columns side by side, the
rows of a ``--map``, a branch, a replay, a background job) reads them here.
The kernel thread waits in this loop while the runtime generates, so the
kernel's interrupt (a ``KeyboardInterrupt`` on this thread) lands here: the
jobs still open are cancelled and read for a grace period, until the runtime
confirms each with its last event, and the caller learns it was interrupted.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence

from mlx_magic.display.interrupts import InterruptShield
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import Event, Failed, Finished

#: How long to wait for the runtime to confirm a cancel before giving up on
#: it; a token step takes far less, only a huge prompt's prefill chunk more.
CANCEL_GRACE_S = 30.0
#: How often to wake up when nothing is due, so that waits stay interruptible.
POLL_S = 0.25
#: After one job's first text is shown, its events are read in batches this
#: often instead of one wake-up per token: every wake-up takes the GIL from
#: the runtime thread (in one process, a fast model decoded at 0.90x raw
#: mlx-lm read per token, 1.04x read this way: BENCHMARKS.md, Investigations 4).
BATCH_READ_S = 0.05
#: Several jobs are polled in turn; this long between rounds with no event.
_ROUND_S = 0.02


def follow(
    jobs: Sequence[Job],
    handle: Callable[[int, Event], None],
    *,
    due: Callable[[], Optional[float]] = lambda: None,
    batch_reads: bool = False,
    stop: Optional[threading.Event] = None,
    shield: Optional[InterruptShield] = None,
) -> bool:
    """Read ``jobs``' events until each has sent its last (Finished or Failed).

    Args:
        handle: called with each event and the position of its job; an
            exception it raises (other than an interrupt) ends the loop.
        due: called between reads (to show held text); returns how soon it
            wants to be called again (s), or ``None``.
        batch_reads: read a lone job's events in batches once its first text
            is shown (:data:`BATCH_READ_S`).
        stop: set from another thread, it stops the jobs as an interrupt does
            (``%mlx cancel`` of a background run).
        shield: held from the first interrupt on, so that later ones only
            count until the caller has kept what came (the caller releases it).

    Returns:
        Whether the jobs were interrupted (or stopped): those still open were
        cancelled, and read until they ended or :data:`CANCEL_GRACE_S` passed.
        A job that never ended then has had no last event handled.
    """
    still_open = list(range(len(jobs)))
    # Read but not handled yet: an interrupt inside ``handle`` loses no event.
    backlog: list[tuple[int, Event]] = []
    deadline: Optional[float] = None
    while still_open:
        try:
            if deadline is None and stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if not backlog:
                timeout = POLL_S
                wanted = due()
                if wanted is not None:
                    timeout = min(timeout, wanted)
                if deadline is not None:
                    timeout = min(timeout, deadline - time.monotonic())
                    if timeout <= 0:
                        break
                backlog = _read(jobs, still_open, timeout, batch_reads)
            while backlog:
                position, event = backlog[0]
                last = isinstance(event, (Finished, Failed))
                if not last:
                    backlog.pop(0)  # an interrupt in handle() shows a chunk once
                if position in still_open:
                    handle(position, event)
                if last:
                    backlog.pop(0)  # an interrupt in handle() handles the end again
                    if position in still_open:
                        still_open.remove(position)
        except KeyboardInterrupt:
            if deadline is not None:
                continue  # a second interrupt while the cancel is confirmed
            if shield is not None:
                shield.hold()
            for position in still_open:
                jobs[position].cancel()
            deadline = time.monotonic() + CANCEL_GRACE_S
    return deadline is not None


def _read(
    jobs: Sequence[Job], still_open: list[int], timeout: float, batch_reads: bool
) -> list[tuple[int, Event]]:
    """The events that came within ``timeout`` (s), with their job's position:
    a lone job's are waited for; several jobs are polled in turn."""
    if len(still_open) == 1:
        position = still_open[0]
        job = jobs[position]
        if batch_reads and job.first_text_shown.is_set():
            job.ended.wait(min(timeout, BATCH_READ_S))
            return [(position, event) for event in job.waiting_events()]
        event = job.next_event(timeout)
        return [] if event is None else [(position, event)]
    read = [(p, event) for p in list(still_open) for event in jobs[p].waiting_events()]
    if not read:
        time.sleep(min(_ROUND_S, max(0.0, timeout)))
    return read
