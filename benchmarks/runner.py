"""Running the scenarios: :func:`run` runs them in order and returns their results.

Every scenario runs its baseline and the magic in the same run, repetition by
repetition, interleaved (baseline, ours, baseline, ours, ...), so a machine
that gets busier or quieter during the run affects both sides alike. The
magic always runs in a real Jupyter kernel (started with jupyter_client, as a
frontend would), its numbers read from ``_mlx.stats`` and from the kernel's
IOPub messages as the client receives them. Progress is reported as it goes.

The table and the report are :mod:`.report`, the plots :mod:`.plots`, the
saved samples :mod:`.results_json`, the command line :mod:`.cli`.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence

from benchmarks.harness import Context
from benchmarks.metrics import ScenarioResult
from benchmarks.scenarios import SCENARIOS, find

__all__ = ["SCENARIOS", "run"]


def run(
    scenarios: Optional[Sequence[str]] = None,
    quick: bool = False,
    progress: Callable[[str], None] = print,
    *,
    work_dir=None,
    profile=None,
    on_result: Optional[Callable[[ScenarioResult], None]] = None,
    deadline: Optional[float] = None,
) -> list[ScenarioResult]:
    """Run the scenarios (all by default) and return their results.

    Args:
        scenarios: names from :data:`SCENARIOS`; ``None`` runs them all.
        quick: one repetition, tiny models where possible, short prompts.
        progress: called with one line at every step, so a long run shows
            where it is.
        work_dir: where tiny models and images are built (default: under the
            mlx_magic cache folder, so that they are built once).
        profile: a :class:`~benchmarks.harness.Profile`: the models to
            run on instead of the CPU set (SmolLM2 and the tiny models).
        on_result: called with each scenario's result as soon as it is done
            (to save what was measured before a long run is stopped).
        deadline: a ``time.perf_counter()`` value; scenarios not started by
            then are skipped (reported as such).

    A scenario that fails does not stop the others: its result carries the
    error and whatever it measured before.
    """
    names = list(SCENARIOS if scenarios is None else scenarios)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    context = Context.create(quick=quick, progress=progress, work_dir=work_dir, profile=profile)
    results = []
    started = time.perf_counter()
    for number, name in enumerate(names, 1):
        context.prefix = f"[{number}/{len(names)} {name}]"
        progress(f"{context.prefix} starting (load average {_load():.2f})")
        result = ScenarioResult(name=name, load=(_load(),))
        began = time.perf_counter()
        if deadline is not None and began > deadline:
            result.error = "skipped: the run's time was up before it started"
            result.load = (result.load[0], _load())
            results.append(result)
            progress(f"{context.prefix} skipped (out of time)")
            continue
        try:
            find(name)(context, result)
        except Exception as error:  # reported, and the next scenario runs
            import traceback

            result.error = f"{type(error).__name__}: {error}"
            progress(f"{context.prefix} FAILED: {result.error}")
            progress(traceback.format_exc())
        result.seconds = time.perf_counter() - began
        result.load = (result.load[0], _load())
        results.append(result)
        if on_result is not None:
            on_result(result)
        verdicts = ", ".join(f"{m.verdict}" for m in result.metrics if m.passed is not None)
        progress(
            f"{context.prefix} done in {result.seconds:.0f} s"
            + (f" ({verdicts})" if verdicts else "")
            + f"; {time.perf_counter() - started:.0f} s so far"
        )
    return results


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
