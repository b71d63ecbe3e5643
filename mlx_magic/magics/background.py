"""Generations that run in the background while the notebook goes on (``-b``).

A background job is an ordinary runtime job (the runtime runs jobs one at a
time, in the order they were submitted) whose events are read by a helper
thread instead of the kernel thread, so the cell returns at once. A kernel
interrupt reaches only the kernel thread, so it leaves background jobs
running; ``%mlx cancel`` stops them.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

from mlx_magic.display.streaming import GenerationFailed, stream_job
from mlx_magic.display.views import StreamView
from mlx_magic.images import LoadedImage
from mlx_magic.vocabulary.job import Job


class Cancellable(Protocol):
    """What a background entry stops: a runtime :class:`Job`, or a ``--map`` run."""

    def cancel(self) -> None: ...

    @property
    def cancelled(self) -> bool: ...


class MapRunHandle:
    """What ``%mlx cancel`` stops for a ``-b`` ``--map`` run (a :class:`Cancellable`)."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def cancel(self) -> None:
        self.stop.set()

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()


@dataclass
class BackgroundJob:
    id: int
    model: str
    job: Cancellable
    view: Optional[StreamView]
    submitted: float = field(default_factory=time.monotonic)
    #: An :class:`MLXResult`, or a ``--map`` run's table (``MLXMapResult``).
    result: Any = None
    error: Optional[str] = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def state(self) -> str:
        if not self.done.is_set():
            return "cancelling" if self.job.cancelled else "running"
        if self.error is not None or self.result is None:
            return "failed"
        reason = getattr(self.result, "finish_reason", None)
        if reason in ("cancelled", "cut") or (reason is None and self.job.cancelled):
            return reason or "cancelled"
        return "done"

    @property
    def tokens(self) -> Optional[int]:
        """Tokens generated, once the job has ended (a --map run: all its items')."""
        if self.result is None:
            return None
        stats = getattr(self.result, "stats", None)
        if stats is not None:
            return stats.generation_tokens
        answers = getattr(self.result, "results", None) or []
        return sum(answer.stats.generation_tokens for answer in answers if answer is not None)


class BackgroundJobs:
    """The background jobs of one kernel, by id (1, 2, …)."""

    def __init__(self) -> None:
        self._jobs: dict[int, BackgroundJob] = {}
        self._ids = itertools.count(1)

    def start(
        self,
        job: Job,
        view: StreamView,
        *,
        interval_s: float,
        on_done: Callable[[BackgroundJob], None],
        images: Sequence[LoadedImage] = (),
        grounding: bool = True,
    ) -> BackgroundJob:
        """Follow ``job`` on a helper thread; ``on_done`` runs when it ends.

        ``images`` are the cell's own, for the boxes an answer draws on them.
        """
        entry = BackgroundJob(id=next(self._ids), model=job.request.model.name, job=job, view=view)
        self._jobs[entry.id] = entry

        def follow() -> None:
            try:
                entry.result = stream_job(
                    job, view, interval_s=interval_s, images=images, grounding=grounding
                ).result
            except GenerationFailed as failed:
                entry.error = failed.failure.message
            except Exception as error:  # never lose a job silently
                entry.error = f"{type(error).__name__}: {error}"
            finally:
                # The caller's bookkeeping (the panel re-enabling its buttons)
                # before anyone waiting on the job hears it is done.
                try:
                    on_done(entry)
                finally:
                    entry.done.set()

        threading.Thread(target=follow, name=f"mlx_magic-job-{entry.id}", daemon=True).start()
        return entry

    def start_run(self, handle: Cancellable, label: str, run: Callable[[], Any]) -> BackgroundJob:
        """Run ``run()`` (a ``--map`` run) on a helper thread as a job of its own:
        ``%mlx jobs`` lists it, ``%mlx cancel`` calls ``handle.cancel()``,
        ``%mlx wait`` waits for it; its result is what ``run()`` returns."""
        entry = BackgroundJob(id=next(self._ids), model=label, job=handle, view=None)
        self._jobs[entry.id] = entry

        def follow() -> None:
            try:
                entry.result = run()
            except Exception as error:  # never lose a job silently
                entry.error = f"{type(error).__name__}: {error}"
                print(f"[job {entry.id}: {error}]")
            finally:
                entry.done.set()

        threading.Thread(target=follow, name=f"mlx_magic-job-{entry.id}", daemon=True).start()
        return entry

    def all(self) -> list[BackgroundJob]:
        return list(self._jobs.values())

    def select(self, which: list[str]) -> list[BackgroundJob]:
        """Jobs named by id, or every job for ``[]`` or ``["all"]``.

        Raises:
            KeyError: an id that names no job (the message says which).
        """
        if not which or which == ["all"]:
            return self.all()
        chosen = []
        for token in which:
            if not token.isdigit() or int(token) not in self._jobs:
                raise KeyError(token)
            chosen.append(self._jobs[int(token)])
        return chosen

    def running(self) -> list[BackgroundJob]:
        return [entry for entry in self._jobs.values() if not entry.done.is_set()]
