"""``--judge MODEL``: a model grades each ``--map`` answer against its label.

After the answers, every answered row with a label becomes one question to
the judge (the ``judge_prompt`` setting, naming ``{question}``, ``{answer}``
and ``{label}``), and the judge's questions decode together as a ``--map``
run's do. The judge's decoding is held to ``{"score": 0..1}`` (the
``--schema`` machinery, llguidance), so every reply parses, even a small or
random model's. The judge's own table (its replies) is ``_mlx.judged``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Optional, Sequence

from mlx_magic.display.map_result import NOT_RUN, MLXMapResult, new_row, with_score
from mlx_magic.display.map_view import MapProgress
from mlx_magic.errors import UserError
from mlx_magic.magics.map_rows import collect_rows
from mlx_magic.magics.mapping import MapItem
from mlx_magic.magics.options import CellOptions, PreparedCell
from mlx_magic.magics.prepare import prepare
from mlx_magic.magics.schemas import AnswerSchema, strict
from mlx_magic.magics.scoring import Scoring, empty_label, field_of
from mlx_magic.magics.session import Session

#: What the judge may reply: one score from 0 to 1.
JUDGE_SCHEMA = AnswerSchema(
    "judge",
    json.dumps(
        strict(
            {
                "type": "object",
                "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}},
                "required": ["score"],
            }
        )
    ),
)
#: Tokens a reply may take: ``{"score": 0.75}`` is about ten.
JUDGE_TOKENS = 24
#: Questions sent to the runtime at a time (a remote server gets them concurrently).
JUDGED_AT_ONCE = 64


def check_judge(session: Session, scoring: Scoring) -> None:
    """The judge model resolves and the ``judge_prompt`` names only what it may.

    Raises:
        UserError: no such model, or a template with another ``{name}``.
    """
    template = session.settings.judge_prompt
    try:
        template.format(question="", answer="", label="")
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(
            f"The judge_prompt setting does not fill in ({type(error).__name__}: {error}): it "
            "may name {question}, {answer} and {label}; write {{ and }} for braces"
        ) from None
    session.resolve(scoring.judge)


def judge_answers(
    session: Session,
    scoring: Scoring,
    items: Sequence[MapItem],
    prompts: dict[int, str],
    result: MLXMapResult,
    progress: MapProgress,
    stop: Optional[threading.Event] = None,
) -> None:
    """Grade the answered rows of ``prompts``' positions; each gets the judge's
    score (or, when the judge failed, an ``error`` saying so), and
    ``result.judged`` the judge's table.

    Raises:
        KeyboardInterrupt: an interrupt (or ``stop``); graded rows keep their scores.
    """
    judged = result.judged or MLXMapResult(
        rows=[new_row({}) for _ in items],
        results=[None] * len(items),
        index=list(result.index),
        items_name=f"judge {scoring.judge}",
    )
    result.judged = judged
    options = CellOptions(
        model=scoring.judge, max_tokens=JUDGE_TOKENS, temperature=0.0, interpolate=False
    )
    cells: dict[int, PreparedCell] = {}
    questions: dict[int, MapItem] = {}
    for position in prompts:
        answer_text = _graded(scoring, result, position)
        label = items[position].columns.get(scoring.key)
        if answer_text is None or empty_label(label):
            continue
        filled = {"question": prompts[position].strip(), "answer": answer_text, "label": label}
        # The judge's table: what it graded, then its own reply (``answer``) and score.
        columns = {"question": filled["question"], "graded": answer_text, "label": label}
        questions[position] = MapItem(index=result.index[position], value=None, columns=columns)
        judged.rows[position] = new_row(columns, scored=True)
        text = session.settings.judge_prompt.format(**filled)
        cell = prepare(session, options, text, session.resolve)
        request = dataclasses.replace(cell.request, schema_json=JUDGE_SCHEMA.json_text)
        cells[position] = dataclasses.replace(cell, request=request, schema=JUDGE_SCHEMA)
    if not cells:
        return
    progress.bar.total += len(cells)
    progress.bar.refresh()
    every = [questions.get(p) or MapItem(index=p, value=None) for p in range(len(items))]
    order = list(cells)
    for start in range(0, len(order), JUDGED_AT_ONCE):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        chunk = order[start : start + JUDGED_AT_ONCE]
        jobs = session.start(*(cells[p].request for p in chunk))
        try:
            collect_rows(dict(zip(chunk, jobs)), cells, judged, every, progress, stop)
        finally:
            _score_rows(chunk, judged, result)


def _score_rows(positions: list[int], judged: MLXMapResult, result: MLXMapResult) -> None:
    for position in positions:
        reply = judged.results[position]
        data = getattr(reply, "data", None)
        row = result.rows[position]
        if data is None:
            if judged.rows[position]["finish_reason"] == NOT_RUN:
                continue
            why = judged.rows[position].get("error") or "its reply did not parse"
            result.rows[position] = {**with_score(row, None), "error": f"--judge: {why}"}
            continue
        score = float(data["score"])
        result.rows[position] = with_score(row, score)
        reply = {k: v for k, v in judged.rows[position].items() if k != "data_score"}
        judged.rows[position] = with_score(reply, score)


def _graded(scoring: Scoring, result: MLXMapResult, position: int) -> Optional[str]:
    """What the judge grades: the answer (with ``=FIELD``: that field of the
    parsed answer), or ``None`` for a row without one."""
    row = result.rows[position]
    answer = result.results[position]
    if answer is None or row.get("error") or row["finish_reason"] not in ("stop", "length"):
        return None
    if scoring.field is None:
        return str(answer.text)
    value = None if answer.data is None else field_of(answer.data, scoring.field)
    return None if value is None else str(value)
