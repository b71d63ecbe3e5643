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
from typing import Callable, Optional, Sequence

from mlx_magic.display.result import MLXResult
from mlx_magic.display.streaming import GenerationFailed, stream_job
from mlx_magic.display.views import StreamView
from mlx_magic.images import LoadedImage
from mlx_magic.runtime.job import Job


@dataclass
class BackgroundJob:
    id: int
    model: str
    job: Job
    view: StreamView
    submitted: float = field(default_factory=time.monotonic)
    result: Optional[MLXResult] = None
    error: Optional[str] = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def state(self) -> str:
        if not self.done.is_set():
            return "cancelling" if self.job.cancelled else "running"
        if self.error is not None or self.result is None:
            return "failed"
        if self.result.finish_reason in ("cancelled", "cut"):
            return self.result.finish_reason
        return "done"

    @property
    def tokens(self) -> Optional[int]:
        """Tokens generated, once the job has ended."""
        return self.result.stats.generation_tokens if self.result is not None else None


class BackgroundJobs:
    """The background jobs of one kernel, by id (1, 2, …)."""

    def __init__(self):
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

        def follow():
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
