"""``--score COLUMN`` and ``--score-by HOW``: each ``--map`` answer against a label.

``--score COLUMN`` names the label column of the items (a DataFrame's
column, a dict item's key); with ``--schema``, ``--score COLUMN=FIELD``
scores the parsed answer's field FIELD instead of its text. ``--score-by``
says how (default ``exact``):

- ``exact``: the answer and the label are the same once normalised
  (:func:`normalise`): 1.0, else 0.0.
- ``contains``: the normalised label is in the normalised answer.
- ``number[:TOL]``: the first number in the answer is within TOL of the
  label's number (absolute; default 0, exact). An answer without a number
  scores 0.0.
- ``NAME``: a function of the notebook, ``NAME(answer, label) -> float``
  (a bool counts as 1.0 or 0.0). One that raises for a row leaves that row's
  score empty, its error column says why, and the run goes on.

A row without an answer (failed, not run), or whose label is empty (``None``,
NaN), has no score. Everything is checked before anything runs
(:func:`scoring_of`, :func:`check_field`): one line each.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from mlx_magic.display.map_result import with_score
from mlx_magic.display.scores import MapScores
from mlx_magic.errors import UserError, one_line
from mlx_magic.magics.mapping import TABLE_COLUMNS

if TYPE_CHECKING:
    from mlx_magic.display.map_result import MLXMapResult
    from mlx_magic.magics.mapping import MapItem
    from mlx_magic.magics.options import CellOptions
    from mlx_magic.magics.schemas import AnswerSchema

#: The ways ``--score-by`` names itself, besides a notebook function.
BUILT_IN = ("exact", "contains", "number")
#: Bootstrap resamples for the 95 % interval, and their fixed seed.
RESAMPLES = 2000
SEED = 0

#: A number as answers write it: ``-3``, ``1,204``, ``2.5``, ``.5``, ``6e-3``.
_NUMBER = re.compile(
    r"[-+−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+(?:[eE][-+]?\d+)?"
)


@dataclass(frozen=True)
class Scoring:
    """A checked ``--score`` / ``--score-by``.

    Attributes:
        column: the label column as written.
        key: its name in the table's rows (``item_answer`` for a column named
            like one of the table's own).
        field: with ``--schema``, the parsed answer's field to score.
        method: ``exact``, ``contains``, ``number``, ``function``, or
            ``judge`` (scored after the answers, by :mod:`.judging`).
        name: ``--score-by`` as written (``number:0.5``, a function's name).
        tolerance: for ``number``.
        function: for a notebook function.
        judge: ``--judge``'s model.
    """

    column: str
    key: str
    field: Optional[str]
    method: str
    name: str
    tolerance: float = 0.0
    function: Optional[Callable[[Any, Any], Any]] = None
    judge: Optional[str] = None

    @property
    def label(self) -> str:
        """What is compared, for the summary: ``label`` or ``label=field``."""
        return self.column if self.field is None else f"{self.column}={self.field}"

    @property
    def described(self) -> str:
        """Scorer and label, to tell whether an earlier table was scored alike."""
        return f"{self.name} vs {self.label}"

    def score(
        self, text: str, data: Any, columns: Mapping[str, Any]
    ) -> tuple[Optional[float], str]:
        """A row's score and, when scoring it failed, one line saying why.

        Args:
            text: the answer.
            data: the parsed ``--schema`` answer (``None`` without one, or when
                it did not parse).
            columns: the row's item columns (the label is there).
        """
        label = columns.get(self.key)
        if empty_label(label):
            return None, ""
        if self.field is not None:
            if data is None:
                return None, ""
            answer = field_of(data, self.field)
        else:
            answer = text
        if self.method == "judge":
            return None, ""  # the judge scores every answer at once, after them
        if self.method == "exact":
            return float(normalise(answer) == normalise(label)), ""
        if self.method == "contains":
            return float(normalise(label) in normalise(answer)), ""
        if self.method == "number":
            expected = first_number(label)
            if expected is None:
                return None, f"--score {self.column}: the label {_short(label)} is not a number"
            got = first_number(answer)
            if got is None:
                return 0.0, ""
            close = abs(got - expected) <= self.tolerance + 1e-9 * max(1.0, abs(expected))
            return float(close), ""
        assert self.function is not None
        try:
            value = self.function(answer, label)
            return float(value), ""
        except Exception as error:  # the notebook's own function
            detail = one_line(f"{type(error).__name__}: {error}", 200)
            return None, f"--score-by {self.name}: {detail}"

    def scored_row(self, row: dict, text: str, data: Any, columns: Mapping[str, Any]) -> dict:
        """``row`` with its score (after ``answer``); a scorer that fails says
        why in its ``error``, unless that already says something."""
        score, problem = self.score(text, data, columns)
        row = with_score(row, score)
        if problem and not row.get("error"):
            row["error"] = problem
        return row


def score_earlier_rows(
    scoring: Scoring,
    previous: MLXMapResult,
    result: MLXMapResult,
    items: Sequence[MapItem],
    positions: Sequence[int],
) -> None:
    """``--resume --score``: the rows that ran before keep their scores when
    they were scored alike; otherwise (no score, another scorer) they are
    scored now, from the answers they kept. The rows to run get an empty score."""
    again = set(positions)
    alike = previous.scorer == scoring.described
    for position, row in enumerate(result.rows):
        answer = result.results[position]
        if position in again or answer is None:
            result.rows[position] = with_score(row, row.get("score") if alike else None)
        elif not alike or "score" not in row:
            result.rows[position] = scoring.scored_row(
                row, answer.text, answer.data, items[position].columns
            )


def rescored(
    scoring: Scoring,
    previous: MLXMapResult,
    result: MLXMapResult,
    items: Sequence[MapItem],
    namespace: Mapping[str, Any],
    schema: Optional[str],
) -> MLXMapResult:
    """``--resume --score`` of a table with nothing left to run: ``result``
    (a copy of ``previous``'s rows) with every row scored and the summary.

    Raises:
        UserError: ``COLUMN=FIELD`` names a field the schema lacks.
    """
    from mlx_magic.magics.schemas import answer_schema

    if scoring.field is not None and schema is not None:
        check_field(scoring, answer_schema(schema, namespace))
    score_earlier_rows(scoring, previous, result, items, ())
    result.seconds, result.batch_size = previous.seconds, previous.batch_size
    result.scores = summarise(scoring, [row.get("score") for row in result.rows])
    return result


def show_scores(shell: Any, scores: Optional[MapScores]) -> None:
    """The summary after the run: a small table in a notebook, a line in a terminal."""
    if scores is None:
        return
    if getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display({"text/plain": f"[{scores}]", "text/html": scores._repr_html_()}, raw=True)
    else:
        print(f"[{scores}]", flush=True)


def scoring_of(
    options: CellOptions, items: Sequence[MapItem], namespace: Mapping[str, Any]
) -> Optional[Scoring]:
    """Check ``--score`` and ``--score-by`` against the items and the notebook
    (``None`` without ``--score``).

    Raises:
        UserError: a column some item lacks (naming the columns it has), a
            ``=FIELD`` without ``--schema``, an unknown ``--score-by``, a name
            that is not a function, a bad tolerance.
    """
    score, score_by, schema = options.score, options.score_by, options.schema
    if score is None:
        return None
    column, _, field = score.partition("=")
    column, field = column.strip(), field.strip()
    if not column or ("=" in score and not field):
        raise UserError(
            f"--score {score}: give the label column (--score label), or with --schema a "
            "column and the field to score (--score label=FIELD)"
        )
    if field and schema is None:
        raise UserError(
            f"--score {score}: {column}={field} scores a --schema field; add --schema NAME, or "
            f"score the answer's text with --score {column}"
        )
    key = f"item_{column}" if column in TABLE_COLUMNS else column
    for position, item in enumerate(items):
        if key not in item.columns:
            has = ", ".join(_written(name) for name in item.columns) or "none"
            where = "the items have" if position == 0 else f"item {position} has"
            raise UserError(f"--score {column}: {where} no column {column!r} (columns: {has})")
    if options.judge is not None:
        return Scoring(
            column, key, field or None, "judge", f"judge {options.judge}", 0.0, None, options.judge
        )
    method, name, tolerance, function = _how(score_by or "exact", namespace)
    return Scoring(column, key, field or None, method, name, tolerance, function)


def _how(
    score_by: str, namespace: Mapping[str, Any]
) -> tuple[str, str, float, Optional[Callable[[Any, Any], Any]]]:
    name = score_by.strip()
    if name in ("exact", "contains"):
        return name, name, 0.0, None
    if name == "number" or name.startswith("number:"):
        written = name.partition(":")[2]
        try:
            tolerance = float(written) if written else 0.0
        except ValueError:
            tolerance = -1.0
        if not math.isfinite(tolerance) or tolerance < 0:
            raise UserError(
                f"--score-by {score_by}: the tolerance must be a number of 0 or more (number:0.5)"
            )
        return "number", name, tolerance, None
    if not name.isidentifier():
        raise UserError(
            f"--score-by {score_by}: use exact, contains, number[:TOL] or the name of a "
            "function (answer, label) -> float"
        )
    if name not in namespace:
        raise UserError(
            f"--score-by {name}: not exact, contains or number[:TOL], and no variable named "
            f"{name!r}; define a function (answer, label) -> float"
        )
    value = namespace[name]
    if not callable(value):
        raise UserError(
            f"--score-by {name}: a {type(value).__name__} is not callable; give a function "
            "(answer, label) -> float"
        )
    return "function", name, 0.0, value


def check_field(scoring: Scoring, schema: Optional[AnswerSchema]) -> None:
    """``--score COLUMN=FIELD``: FIELD is one of the schema's properties.

    Raises:
        UserError: no such field (naming those it has), or a schema without any.
    """
    if scoring.field is None or schema is None:
        return
    import json

    properties = json.loads(schema.json_text).get("properties")
    if not isinstance(properties, Mapping) or not properties:
        raise UserError(
            f"--score {scoring.label}: the schema {schema.name} has no fields; score the "
            f"answer itself with --score {scoring.column}"
        )
    if scoring.field not in properties:
        raise UserError(
            f"--score {scoring.label}: the schema {schema.name} has no field "
            f"{scoring.field!r} (fields: {', '.join(map(str, properties))})"
        )


def summarise(scoring: Scoring, scores: Sequence[Optional[float]]) -> MapScores:
    """The mean of the rows' scores, its 95 % bootstrap interval (the 2.5th and
    97.5th percentiles of :data:`RESAMPLES` resampled means, seed :data:`SEED`:
    the same table gives the same interval), and how many rows were scored."""
    import numpy as np

    values = np.array([s for s in scores if s is not None and math.isfinite(s)], dtype=float)
    count = len(values)
    if count == 0:
        return MapScores(scoring.name, scoring.label, None, None, None, 0)
    mean = float(values.mean())
    rng = np.random.default_rng(SEED)
    # In slices: 2,000 resamples of 100,000 rows at once would be 1.6 GB.
    per_slice = max(1, 4_000_000 // count)
    means: list = []
    for start in range(0, RESAMPLES, per_slice):
        size = min(per_slice, RESAMPLES - start)
        picks = rng.integers(0, count, size=(size, count))
        means.append(values[picks].mean(axis=1))
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return MapScores(scoring.name, scoring.label, mean, float(low), float(high), count)


def normalise(value: Any) -> str:
    """``value`` as text to compare: casefolded, runs of whitespace made one
    space, and whitespace and punctuation (Unicode's P* categories: ``.,;:!?"'()``
    and the like) stripped from both ends, so ``" Paris."`` is ``"paris"``."""
    text = " ".join(str(value).casefold().split())
    start, end = 0, len(text)
    while start < end and _strippable(text[start]):
        start += 1
    while end > start and _strippable(text[end - 1]):
        end -= 1
    return text[start:end]


def first_number(value: Any) -> Optional[float]:
    """The first number in ``value`` (itself, when it is one), or ``None``."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    match = _NUMBER.search(str(value))
    if match is None:
        return None
    return float(match.group().replace(",", "").replace("−", "-"))


def _strippable(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def empty_label(label: Any) -> bool:
    """Whether a label is missing: ``None`` or NaN (pandas' missing value)."""
    if label is None:
        return True
    try:
        return bool(label != label)  # NaN (pandas' missing value)
    except Exception:  # an array-like label: not empty
        return False


def field_of(data: Any, field: str) -> Any:
    """A parsed answer's field: a dict's key or a Pydantic instance's attribute."""
    if isinstance(data, Mapping):
        return data.get(field)
    return getattr(data, field, None)


def _written(name: str) -> str:
    """A table column as the user wrote it (``item_answer`` was ``answer``)."""
    if name.startswith("item_") and name[5:] in TABLE_COLUMNS:
        return name[5:]
    return name


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
