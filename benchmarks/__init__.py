"""The benchmark: mlx_magic against raw mlx-lm and mlx-vlm, side by side, in one run.

``python -m mlx_magic.bench`` (see :mod:`.cli`) or ``%mlx bench``. From Python::

    from mlx_magic import bench
    results = bench.run(["overhead"], quick=True, progress=print)
    print(bench.table(results))
    bench.plot(results, "benchmarks")
    bench.write_report(results, "BENCHMARKS.md", plots=..., command=...)

The names below are the package's interface, whichever module defines them:

* :mod:`.metrics` - :class:`Metric`, :class:`ScenarioResult`, medians;
* :mod:`.scenarios` - :data:`SCENARIOS`, one module per scenario;
* :mod:`.harness` - what the scenarios share: kernels, baselines, processes, texts;
* :mod:`.runner` - :func:`run`;
* :mod:`.report` - :func:`table`, :func:`write_report`; :mod:`.plots` - :func:`plot`;
* :mod:`.results_json` - :func:`save_json`, :func:`load_json`, :func:`merge`;
* :mod:`.machine` - the machine, the versions, the MLX speed probe;
* :mod:`.cli` - :func:`main`, the command line;
* :mod:`.gpu` - ``python -m mlx_magic.bench.gpu``: random models of real shapes and
  the scenarios on them (a GPU run; docs/gpu.md).

Imports go one way, from the command line down: cli → runner, report, plots,
results_json, machine; runner → scenarios → harness, metrics; report, plots and
results_json → metrics (and machine, the list of scenarios). metrics, machine and
harness import nothing else of the benchmark, and no module imports from this
``__init__``.
"""

from mlx_magic.bench.cli import main
from mlx_magic.bench.metrics import Metric, ScenarioResult
from mlx_magic.bench.plots import plot
from mlx_magic.bench.report import table, write_report
from mlx_magic.bench.results_json import load_json, merge, save_json
from mlx_magic.bench.runner import SCENARIOS, run

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
