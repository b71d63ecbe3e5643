"""What the thread runtime's one scheduler loop steps: a :class:`Run` is one
generation of the engine (one job's answer, or a batch of jobs decoded
together) and the jobs its events go to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import Finished, ModelReady, TokenChunk

if TYPE_CHECKING:
    from mlx_magic.engine.stepping import Steps

#: After a lone answer's first text, how long the runtime lets whoever shows
#: it put it out before computing the next token. Without this pause the next
#: step takes the CPU (and the GIL) at once and the first word reaches the
#: screen tens of milliseconds late on a busy machine; with it, it is shown
#: in a few milliseconds, which is also all the pause usually lasts.
FIRST_TEXT_PAUSE_S = 0.05


class Run:
    """One generation of the engine and its jobs.

    :meth:`step` computes one step (:data:`~mlx_magic.engine.stepping.Steps`)
    and puts its events in the jobs they are addressed to, each
    :class:`Finished` marked with whether the model was warm; it says whether
    the generation goes on. ``finished`` holds the Finished events so far.
    """

    def __init__(
        self,
        jobs: list[Job],
        steps: Steps,
        ready: ModelReady,
        *,
        done: Callable[[Run], None],
        pause_after_first_text: bool = False,
    ) -> None:
        self.jobs, self.ready = jobs, ready
        self._steps = steps
        self._done = done
        self._pause = pause_after_first_text
        self.finished: list[Finished] = []
        self._counted = False

    def step(self) -> bool:
        events = next(self._steps, None)
        if events is None:
            return False
        text_now = False
        for _, event in events:
            if isinstance(event, Finished):
                event.stats.warm = self.ready.warm
                event.stats.load_s = self.ready.load_s
                self.finished.append(event)
            elif isinstance(event, TokenChunk) and event.text:
                text_now = True
        if len(self.finished) == len(self.jobs):
            # Counted (and memory sampled) before any job hears its end: a cell
            # that reads the runtime's status next finds this generation there,
            # though the engine may still have work after the answer (a disk write).
            self.done()
        for position, event in events:
            self.jobs[position].emit(event)
        if self._pause and text_now:
            self._pause = False
            job = self.jobs[0]
            if not job.ended.is_set():
                job.wait_for_first_text(FIRST_TEXT_PAUSE_S)
        return True

    def done(self) -> None:
        """Once: when every job has finished, or after the last step."""
        if not self._counted:
            self._counted = True
            self._done(self)
