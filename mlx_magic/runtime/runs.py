"""What the thread runtime's one scheduler loop steps: a :class:`Run` is one
job's generation (:func:`alone`, taking turns with others token by token) or
a batch of jobs decoded together (:mod:`mlx_magic.engine.batching`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import GenerationStats, ModelReady

if TYPE_CHECKING:
    from mlx_magic.engine.text_generation import PendingGeneration


class Run:
    """What the scheduler loop steps: ``step()`` computes one token of each of
    ``jobs`` still going (emitting their events, the last one too) and says
    whether any goes on; ``done()`` runs once after the last step."""

    def __init__(
        self, jobs: list[Job], step: Callable[[], bool], done: Callable[[], None] = lambda: None
    ) -> None:
        self.jobs, self.step, self.done = jobs, step, done


def alone(
    job: Job,
    ready: ModelReady,
    pending: PendingGeneration,
    finished: Callable[[str, Optional[GenerationStats]], None],
) -> Run:
    """One job's generation as a run (alone, or taking turns with others): its
    :class:`Finished` says whether the model was warm, and is counted."""

    def step() -> bool:
        if pending.stepper.step():
            return True
        last = pending.finish()
        last.stats.warm = ready.warm
        last.stats.load_s = ready.load_s
        finished(ready.model, last.stats)
        job.emit(last)
        return False

    return Run([job], step)
