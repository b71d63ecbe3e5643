"""The scenarios of :mod:`benchmarks`, one module each, named as the scenario.

Each scenario is a function ``name(context, result)`` in the module of the same
name that fills a :class:`~benchmarks.metrics.ScenarioResult` as it goes
(so a scenario that fails half way keeps what it measured). The harness they
share (kernels, the in-process baselines, fresh processes, the texts) is
:mod:`benchmarks.harness`; the rows they fill are
:mod:`benchmarks.metrics`.

This package imports no scenario until :func:`find` asks for it, so that the
list can be read (by the command line, ``%mlx bench``, :func:`~benchmarks.merge`)
without loading the harness.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from benchmarks.harness import Context
    from benchmarks.metrics import ScenarioResult

#: The scenarios, in the order they run.
SCENARIOS = (
    "overhead",
    "traffic",
    "warm_vs_cold",
    "conversation",
    "prefix",
    "repeat_image",
    "responsiveness",
    "runtimes",
)


def find(name: str) -> Callable[[Context, ScenarioResult], None]:
    """The function of scenario ``name`` (one of :data:`SCENARIOS`), imported now."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, name)
