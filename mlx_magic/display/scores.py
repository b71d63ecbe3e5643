"""A ``--map`` run's scores, summarised: ``_mlx.scores``.

One line in a terminal (``str``), a small HTML table in a notebook.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter


@dataclass(frozen=True)
class MapScores:
    """The summary of one model's scores over a ``--map`` table.

    Attributes:
        scorer: how the rows were scored (``exact``, ``contains``,
            ``number:0.5``, or the notebook function's name).
        label: what was compared: the label column (``label``), or with a
            ``--schema`` field ``label=FIELD``.
        mean: the mean score of the scored rows (``None`` when none was).
        low: the 95 % bootstrap interval's low end (fixed seed: it repeats).
        high: its high end.
        count: how many rows have a score (failed, unlabelled and not-run
            rows have none).
    """

    scorer: str
    label: str
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    count: int

    def __str__(self) -> str:
        """``score (exact vs label): mean 0.667 · 95% interval 0.333–1.000 · 3 rows``."""
        head = f"score ({self.scorer} vs {self.label})"
        if self.mean is None or self.low is None or self.high is None:
            return f"{head}: no row scored"
        rows = "1 row" if self.count == 1 else f"{self.count:,} rows"
        return (
            f"{head}: mean {self.mean:.3f} · 95% interval {self.low:.3f}–{self.high:.3f} · {rows}"
        )

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        def number(value: Optional[float]) -> str:
            return "—" if value is None else f"{value:.3f}"

        cells = [
            html.escape(self.scorer),
            html.escape(self.label),
            number(self.mean),
            f"{number(self.low)}–{number(self.high)}",
            f"{self.count:,}",
        ]
        head = "".join(
            f"<th>{name}</th>" for name in ("scorer", "label", "mean", "95% interval", "rows")
        )
        body = "".join(f"<td>{cell}</td>" for cell in cells)
        return (
            f'<table class="mlx-magic-scores"><thead><tr>{head}</tr></thead>'
            f"<tbody><tr>{body}</tr></tbody></table>"
        )
