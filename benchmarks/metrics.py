"""What a scenario measures: :class:`Metric` (one table row), :class:`ScenarioResult`,
the ways a row compares its two sides (:data:`RATIO`, :data:`SPEEDUP`,
:data:`DIFFERENCE`), and the small number helpers the scenarios and the report
share (medians, a speed-up of medians, milliseconds).

Imports nothing else of the benchmark: every other module may import it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Iterable, Optional

# How the ratio column compares the two sides.
RATIO = "ours/baseline"  # ours ÷ baseline (tokens/s, bytes, a turn against turn 1)
SPEEDUP = "baseline/ours"  # how many times faster ours is (times)
DIFFERENCE = "ours-baseline"  # what ours adds (times)


@dataclass
class Metric:
    """One row of the table: a measured quantity, both sides, the target.

    ``baseline`` and ``ours`` hold one sample per repetition (or per question,
    per ping: whatever the scenario repeats). ``passed`` is ``None`` for a
    row that is shown for information and has no target.
    """

    scenario: str
    name: str
    unit: str
    baseline: list
    ours: list
    baseline_label: str = ""
    ours_label: str = ""
    ratio_kind: str = RATIO
    target: str = ""
    passed: Optional[bool] = None

    @property
    def baseline_median(self) -> Optional[float]:
        return median(self.baseline)

    @property
    def ours_median(self) -> Optional[float]:
        return median(self.ours)

    @property
    def ratio(self) -> Optional[float]:
        """The comparison of the medians, as ``ratio_kind`` says."""
        base, ours = self.baseline_median, self.ours_median
        if base is None or ours is None:
            return None
        if self.ratio_kind == DIFFERENCE:
            return ours - base
        if self.ratio_kind == SPEEDUP:
            return base / ours if ours else None
        return ours / base if base else None

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "info"
        return "pass" if self.passed else "MISS"


@dataclass
class ScenarioResult:
    """What one scenario measured.

    Attributes:
        name: the scenario's name (one of :data:`benchmarks.scenarios.SCENARIOS`).
        title: one line saying what was compared.
        metrics: the table rows.
        series: named lists of numbers for the plots (per turn, per question...).
        notes: measured evidence and explanations, one paragraph each.
        setup: how it was run (models, prompts, token counts, repetitions).
        error: the error that stopped the scenario, if one did.
        seconds: how long the scenario took.
        load: the 1-minute load average before and after the scenario.
        ran: when and with which command it ran (set by the command line).
    """

    name: str
    title: str = ""
    metrics: list = field(default_factory=list)
    series: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    setup: dict = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0
    load: tuple = ()
    ran: str = ""

    def metric(self, name: str) -> Optional[Metric]:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        return None


# --------------------------------------------------------------------------
# Numbers


def median(values: Iterable[Optional[float]]) -> Optional[float]:
    """The median of the values that are not ``None``; ``None`` if there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_of(values: Iterable[Optional[float]]) -> float:
    """The median of the values that are not ``None``, where at least one must be
    (raises :class:`statistics.StatisticsError` otherwise)."""
    return statistics.median([v for v in values if v is not None])


def minimum(values: Iterable[Optional[float]]) -> Optional[float]:
    """The least of the values that are not ``None``; ``None`` if there are none."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


def speedup(baseline: Iterable[Optional[float]], ours: Iterable[Optional[float]]) -> float:
    """How many times faster ours is: the baseline's median ÷ ours."""
    return median_of(baseline) / median_of(ours)


def ms(seconds: Optional[float]) -> str:
    """A duration in milliseconds, for progress lines and notes."""
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def mean_interval(values: Iterable[Optional[float]]) -> tuple[float, float]:
    """The mean and the half-width of its 95 % interval (1.96 standard errors;
    0 for a single value)."""
    present = [v for v in values if v is not None]
    mean = statistics.fmean(present)
    if len(present) < 2:
        return mean, 0.0
    return mean, 1.96 * statistics.stdev(present) / len(present) ** 0.5


def describe_ratios(ratios: Iterable[Optional[float]]) -> str:
    """Paired ratios as a report shows them: each one, then median and mean ± 95 %."""
    present = [r for r in ratios if r is not None]
    if not present:
        return "–"
    mean, half = mean_interval(present)
    return (
        f"{', '.join(f'{r:.2f}' for r in present)} (median {statistics.median(present):.3f}; "
        f"mean {mean:.3f} ± {half:.3f} at 95 %, n = {len(present)})"
    )
