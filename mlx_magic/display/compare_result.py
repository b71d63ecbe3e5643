"""What a ``--map`` cell with several models (or settings) leaves behind: one
table with an answer column per model, and the models' scores side by side."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.display.map_result import (
    NOT_RUN,
    RESULT_COLUMNS,
    MLXMapResult,
    table_html,
    table_text,
)

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter

    from mlx_magic.display.scores import MapScores

#: The per-model columns of the joined table, in this order.
PER_MODEL_COLUMNS = ("answer", "score", "finish_reason", "error")
#: The chart's bars, in pixels.
BAR_WIDTH, BAR_HEIGHT = 240, 14


@dataclass
class MLXCompareResult:
    """The answers of a ``--map`` cell run by several models (or samplers), in
    ``_mlx`` (and ``--out NAME``).

    Attributes:
        runs: each model's own table (an :class:`MLXMapResult`), by its label
            (the model's name, plus the temperature or seed where those differ).
        items_name: the name ``--map`` was given.
        seconds: the whole run's wall time.
    """

    runs: dict[str, MLXMapResult] = field(default_factory=dict)
    items_name: str = ""
    seconds: float = 0.0

    @property
    def labels(self) -> list[str]:
        return list(self.runs)

    @property
    def rows(self) -> list[dict]:
        """One dict per item: its columns, then ``answer · LABEL`` (and
        ``score · LABEL``, ``finish_reason · LABEL``, ``error · LABEL``) per model."""
        if not self.runs:
            return []
        first = next(iter(self.runs.values()))
        joined = []
        for position, row in enumerate(first.rows):
            out = {k: v for k, v in row.items() if k not in (*RESULT_COLUMNS, "score")}
            for label, run in self.runs.items():
                theirs = run.rows[position]
                for column in PER_MODEL_COLUMNS:
                    if column in theirs:
                        out[f"{column} · {label}"] = theirs[column]
            joined.append(out)
        return joined

    @property
    def index(self) -> list:
        return next(iter(self.runs.values())).index if self.runs else []

    @property
    def table(self) -> Any:
        """The joined rows as a pandas DataFrame (indexed like the items), or a
        list of dicts without pandas. Each model's own table, with tokens,
        times and provenance: ``runs[label].table``."""
        try:
            import pandas
        except ImportError:
            return self.rows
        return pandas.DataFrame(self.rows, index=list(self.index))

    @property
    def scores(self) -> dict[str, Optional[MapScores]]:
        """``--score``'s summary per model (mean, 95 % interval, count)."""
        return {label: run.scores for label, run in self.runs.items()}

    @property
    def disagreements(self) -> list[int]:
        """Positions of the items the models answered differently: scored
        differently with ``--score``, else with answers that differ (casefolded,
        whitespace collapsed). Items a model has not answered are left out."""
        out = []
        for position in range(len(self.index)):
            rows = [run.rows[position] for run in self.runs.values()]
            if any(row["finish_reason"] not in ("stop", "length") for row in rows):
                continue
            if all("score" in row for row in rows):
                seen = {row["score"] for row in rows}
            else:
                seen = {" ".join(str(row["answer"]).casefold().split()) for row in rows}
            if len(seen) > 1:
                out.append(position)
        return out

    def unfinished(self) -> dict[str, list[int]]:
        """Per model, the positions ``--resume`` runs again."""
        return {label: run.unfinished() for label, run in self.runs.items()}

    @property
    def summary(self) -> str:
        """``"3 items × 2 models · 6 answers · 1 not run · 12.3 s"``."""
        count = len(self.index)
        answered = sum(
            1
            for run in self.runs.values()
            for row in run.rows
            if row["finish_reason"] in ("stop", "length") and not row.get("error")
        )
        models = len(self.runs)
        parts = [f"{count} items × {models} models", f"{answered} answers"]
        left = sum(
            1 for run in self.runs.values() for row in run.rows if row["finish_reason"] == NOT_RUN
        )
        if left:
            parts.append(f"{left} not run")
        if self.seconds > 0:
            parts.append(f"{self.seconds:.1f} s")
        return " · ".join(parts)

    def __len__(self) -> int:
        return len(self.index)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(table_text(self.rows, self.index, self.summary))

    def _repr_html_(self) -> str:
        return table_html(self.rows, self.index, self.summary)


def scores_text(scores: dict[str, Optional[MapScores]], disagree: int) -> str:
    """One line per model, then how many items they disagree on."""
    lines = [f"{label}: {score}" for label, score in scores.items() if score is not None]
    lines.append(f"the models disagree on {disagree} item{'s' * (disagree != 1)}")
    return "\n".join(lines)


def scores_html(scores: dict[str, Optional[MapScores]], disagree: int) -> str:
    """The models' scores as a table with a bar per model: the mean as the bar,
    the 95 % interval as a line across it (inline SVG: no plotting library)."""
    rows = []
    for label, score in scores.items():
        if score is None:
            continue
        cells = [html.escape(label), _number(score.mean)]
        cells.append(f"{_number(score.low)}–{_number(score.high)}")
        cells.append(f"{score.count:,}")
        cells.append(_bar(score))
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("model", "mean", "95% interval", "rows", ""))
    first = next((s for s in scores.values() if s is not None), None)
    how = f"score ({html.escape(first.scorer)} vs {html.escape(first.label)})" if first else ""
    return (
        f'<div class="mlx-magic-compare-scores"><div>{how}</div>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<div>the models disagree on {disagree} item{'s' * (disagree != 1)}</div></div>"
    )


def _number(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3f}"


def _bar(score: MapScores) -> str:
    """A bar from 0 to the mean on a 0–1 scale (scores outside it are clipped)."""
    if score.mean is None or score.low is None or score.high is None:
        return ""

    def x(value: float) -> float:
        return round(BAR_WIDTH * min(1.0, max(0.0, value)), 1)

    middle = BAR_HEIGHT / 2
    return (
        f'<svg width="{BAR_WIDTH}" height="{BAR_HEIGHT}" role="img" '
        f'aria-label="mean {score.mean:.3f}">'
        f'<rect x="0" y="2" width="{BAR_WIDTH}" height="{BAR_HEIGHT - 4}" fill="#8881"/>'
        f'<rect class="mean" x="0" y="2" width="{x(score.mean)}" height="{BAR_HEIGHT - 4}" '
        'fill="#4a7bd0"/>'
        f'<line class="interval" x1="{x(score.low)}" x2="{x(score.high)}" y1="{middle}" '
        f'y2="{middle}" stroke="#222" stroke-width="2"/></svg>'
    )
