"""What a ``--map`` cell leaves behind: one row per item, as a table."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter

    from mlx_magic.display.result import MLXResult
    from mlx_magic.display.scores import MapScores

#: The columns every --map table has, after the item's own.
RESULT_COLUMNS = ("answer", "tokens", "time_s", "finish_reason", "error")
#: The finish reason of an item a stopped run never reached.
NOT_RUN = "not run"


@dataclass
class MLXMapResult:
    """The answers of a ``--map`` cell, stored in ``_mlx`` (and ``--out NAME``).

    Attributes:
        rows: one dict per item, in item order: the item's columns (a
            DataFrame's, a dict's keys, or ``item``), then ``answer``,
            ``tokens``, ``time_s``, ``finish_reason`` and ``error``.
        results: the :class:`~mlx_magic.display.result.MLXResult` of each item
            (``None`` for an item that failed or did not run).
        index: the items' labels (a DataFrame's or Series' index, a dict's keys).
        items_name: the name ``--map`` was given.
        seconds: the run's wall time.
        scorer: with ``--score``, how the rows are scored (``exact vs label``;
            the rows then have a ``score`` column after ``answer``); else empty.
        scores: with ``--score``, the summary (mean, 95 % interval, count).
        judged: with ``--judge``, the judge's own table: each graded row's
            ``question``, the ``graded`` answer and the ``label``, then the
            judge's reply (``answer``) and its ``score``.
    """

    rows: list = field(default_factory=list)
    results: list = field(default_factory=list)
    index: list = field(default_factory=list)
    items_name: str = ""
    seconds: float = 0.0
    batch_size: int = 1
    scorer: str = ""
    scores: Optional[MapScores] = None
    judged: Optional[MLXMapResult] = None

    @property
    def table(self) -> Any:
        """The rows as a pandas DataFrame (indexed like the items), or a list of
        dicts when pandas is not installed; the last column is each answer's
        provenance record."""
        rows = [
            {**row, "provenance": getattr(result, "provenance", None)}
            for row, result in zip(self.rows, self.results)
        ]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows, index=list(self.index))

    @property
    def provenance(self) -> Optional[dict]:
        """The run's record: the first answered item's (each row has its own in
        ``results[i].provenance`` and the table's ``provenance`` column)."""
        return next((r.provenance for r in self.results if getattr(r, "provenance", None)), None)

    @property
    def counts(self) -> dict:
        counts: dict[str, int] = {}
        for row in self.rows:
            reason = row["finish_reason"] if not row.get("error") else "failed"
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    @property
    def generated_tokens(self) -> int:
        return sum(int(row.get("tokens") or 0) for row in self.rows)

    @property
    def summary(self) -> str:
        """``"32 items · 30 done · 1 failed · 1 not run · 1,204 tokens · 41.2 tok/s · 12.3 s"``."""
        counts = self.counts
        done = counts.get("stop", 0) + counts.get("length", 0)
        parts = [f"{len(self.rows)} items", f"{done} done"]
        for reason in ("failed", "cancelled", NOT_RUN):
            if counts.get(reason):
                parts.append(f"{counts[reason]} {reason}")
        tokens = self.generated_tokens
        parts.append(f"{tokens:,} tokens")
        if self.seconds > 0:
            parts.append(f"{tokens / self.seconds:.1f} tok/s")
            parts.append(f"{done / self.seconds * 60:.1f} answers/min")
            parts.append(f"{self.seconds:.1f} s")
        if self.batch_size > 1:
            parts.append(f"batches of {self.batch_size}")
        return " · ".join(parts)

    def unfinished(self) -> list[int]:
        """Positions of the items to run again with ``--resume``."""
        return [
            position
            for position, row in enumerate(self.rows)
            if row.get("error") or row["finish_reason"] not in ("stop", "length")
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> Optional[MLXResult]:
        return self.results[position]

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(table_text(self.rows, self.index, self.summary))

    def _repr_html_(self) -> str:
        return table_html(self.rows, self.index, self.summary)


def new_row(
    columns: dict,
    *,
    finish_reason: str = NOT_RUN,
    error: Optional[str] = None,
    scored: bool = False,
) -> dict:
    """A table row for an item, before (or without) an answer; ``scored``: with
    an empty ``score`` column after ``answer`` (``--score``).

    The item's text that UTF-8 cannot carry (a lone surrogate) is kept
    escaped (:func:`printable`), so the table, its HTML and a notebook's
    messages can show the row that says why the item failed.
    """
    row = {printable(name): printable(value) for name, value in columns.items()}
    row["answer"] = ""
    if scored:
        row["score"] = None
    row.update(tokens=0, time_s=0.0, finish_reason=finish_reason, error=error or "")
    return row


def with_score(row: dict, score: Optional[float]) -> dict:
    """``row`` with its ``score`` (set, or put after ``answer`` where it had none)."""
    if "score" in row:
        return {**row, "score": score}
    out: dict = {}
    for name, value in row.items():
        out[name] = value
        if name == "answer":
            out["score"] = score
    return out


def printable(value: Any) -> Any:
    """``value``, or for text that is not valid Unicode (a lone surrogate such
    as ``'\\ud800'``, from a broken decode) that text with the surrogate
    written as its escape: pandas, HTML and Jupyter's messages all refuse it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def table_text(rows: list, index: list, summary: str) -> str:
    """The rows as pandas prints them (or one per line), then ``[summary]``."""
    try:
        import pandas

        shown = str(pandas.DataFrame(rows, index=list(index)))
    except ImportError:
        shown = "\n".join(str(row) for row in rows)
    return f"{shown}\n[{summary}]"


def table_html(rows: list, index: list, summary: str) -> str:
    """:func:`rows_html`, then the summary as a footer."""
    return rows_html(rows, index) + (
        '<div class="mlx-magic-footer" style="font-size: 0.85em; opacity: 0.7">'
        f"{html.escape(summary)}</div>"
    )


def rows_html(rows: list, index: list, limit: int = 50) -> str:
    """A plain HTML table of ``rows`` (the first ``limit``), answers cut to 300 characters."""
    if not rows:
        return "<em>no rows</em>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["", *columns])
    body = []
    for label, row in list(zip(index, rows))[:limit]:
        cells = [html.escape(printable(str(label)))] + [
            html.escape(_cut(row.get(column, ""))) for column in columns
        ]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    more = f"<div><em>… {len(rows) - limit} more rows</em></div>" if len(rows) > limit else ""
    return (
        '<table class="mlx-magic-map">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
    )


def _cut(value: Any, limit: int = 300) -> str:
    text = printable(f"{value:.2f}" if isinstance(value, float) else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
