"""The benchmark: mlx_magic against raw mlx-lm and mlx-vlm, side by side, in one run.

It lives beside the package, not in it (the wheel holds only ``mlx_magic``): run
it from a clone of the repository, at its root, with ``python -m benchmarks``
(see :mod:`.cli`; ``%mlx bench`` only names that command). From Python::

    import benchmarks
    results = benchmarks.run(["overhead"], quick=True, progress=print)
    print(benchmarks.table(results))
    benchmarks.plot(results, "benchmarks")
    benchmarks.write_report(results, "BENCHMARKS.md", plots=..., command=...)

This folder also holds what the runs write and read (``results.json``, the PNG
plots, ``investigations.md``, the GPU runs in ``gpu/results-*``) and the
experiments run as scripts (``experiments.py``, ``batch_throughput.py``,
``draft_speed.py``, ``drawing_cost.py``, ``grounding_cost.py``, ``schema_cost.py``,
``tool_step_cost.py``: ``python
benchmarks/NAME.py`` or ``python -m benchmarks.NAME``).

The names below are the package's interface, whichever module defines them:

* :mod:`.metrics` - :class:`Metric`, :class:`ScenarioResult`, medians;
* :mod:`.scenarios` - :data:`SCENARIOS`, one module per scenario;
* :mod:`.harness` - what the scenarios share: kernels, baselines, processes, texts;
* :mod:`.runner` - :func:`run`;
* :mod:`.report` - :func:`table`, :func:`write_report`; :mod:`.plots` - :func:`plot`;
* :mod:`.results_json` - :func:`save_json`, :func:`load_json`, :func:`merge`;
* :mod:`.machine` - the machine, the versions, the MLX speed probe;
* :mod:`.cli` - :func:`main`, the command line;
* :mod:`.gpu` - ``python -m benchmarks.gpu``: random models of real shapes and
  the scenarios on them (a GPU run; docs/gpu.md).

Imports go one way, from the command line down: cli → runner, report, plots,
results_json, machine; runner → scenarios → harness, metrics; report, plots and
results_json → metrics (and machine, the list of scenarios). metrics, machine and
harness import nothing else of the benchmark, and no module imports from this
``__init__``.
"""

from benchmarks.cli import main
from benchmarks.metrics import Metric, ScenarioResult
from benchmarks.plots import plot
from benchmarks.report import table, write_report
from benchmarks.results_json import load_json, merge, save_json
from benchmarks.runner import SCENARIOS, run

__all__ = [
    "SCENARIOS",
    "Metric",
    "ScenarioResult",
    "load_json",
    "main",
    "merge",
    "plot",
    "run",
    "save_json",
    "table",
    "write_report",
]
