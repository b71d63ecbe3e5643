"""A ``--map`` run's answers becoming rows: each job's events are read until
it ends, and its row (answer, tokens, time, the parsed ``--schema`` fields,
the ``--score``) is filled in as it does."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Optional, Union

from mlx_magic.display.following import follow
from mlx_magic.display.map_result import MLXMapResult, new_row
from mlx_magic.display.map_view import MapProgress
from mlx_magic.display.result import MLXResult, TokenInfo
from mlx_magic.magics.mapping import MapItem, apart_from_table
from mlx_magic.magics.options import PreparedCell
from mlx_magic.magics.schemas import data_columns
from mlx_magic.magics.scoring import Scoring
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.provenance import provenance_record
from mlx_magic.vocabulary.values import Event, Failed, Finished, TokenChunk


def collect_rows(
    jobs: dict[int, Job],
    cells: dict[int, PreparedCell],
    result: MLXMapResult,
    items: list[MapItem],
    progress: MapProgress,
    stop: Optional[threading.Event] = None,
    scoring: Optional[Scoring] = None,
) -> None:
    """Read every job's events until all have ended; rows fill in as they do.

    Raises:
        KeyboardInterrupt: the run was interrupted or ``stop`` was set; the
            jobs in flight were cancelled and their rows kept as they ended.
    """
    positions = list(jobs)
    texts: dict[int, list[str]] = {p: [] for p in jobs}
    tokens: dict[int, list[TokenInfo]] = {p: [] for p in jobs}
    started = {p: time.perf_counter() for p in jobs}
    recorded: set[int] = set()

    def handle(index: int, event: Event) -> None:
        position = positions[index]
        if isinstance(event, TokenChunk):
            texts[position].append(event.text)
            tokens[position].extend(TokenInfo(id=int(t)) for t in event.token_ids)
        elif isinstance(event, (Finished, Failed)) and position not in recorded:
            # Once: an interrupt inside the progress bar hands the end over again.
            recorded.add(position)
            _record(position, event, texts, tokens, started, cells, result, items, scoring)
            progress.item_done(result.rows[position], items[position].index)

    if follow(list(jobs.values()), handle, stop=stop):
        raise KeyboardInterrupt  # as an interrupt, kept by run_map


def _record(
    position: int,
    event: Union[Finished, Failed],
    texts: dict[int, list[str]],
    tokens: dict[int, list[TokenInfo]],
    started: dict[int, float],
    cells: dict[int, PreparedCell],
    result: MLXMapResult,
    items: list[MapItem],
    scoring: Optional[Scoring] = None,
) -> None:
    item = items[position]
    scored = scoring is not None
    if isinstance(event, Failed):
        result.rows[position] = new_row(
            item.columns, finish_reason="failed", error=event.message, scored=scored
        )
        return
    if event.finish_reason == "cancelled" and not texts[position]:
        # Never started: as if not run (``--resume`` runs it).
        return
    text = "".join(texts[position])
    stats = dataclasses.replace(event.stats)
    if tokens[position]:
        stats.generation_tokens = len(tokens[position])
    request = cells[position].request
    answer = MLXResult(
        text=text,
        prompt=request.prompt,
        model=getattr(stats, "server_model", None) or request.model.name,
        finish_reason=event.finish_reason,
        stats=stats,
        tokens=tokens[position],
    )
    answer.provenance = provenance_record(answer, request)
    answer.request = request
    result.results[position] = answer
    row = new_row(item.columns, finish_reason=event.finish_reason, scored=scored)
    row.update(
        answer=text,
        tokens=stats.generation_tokens,
        time_s=round(time.perf_counter() - started[position], 3),
    )
    schema = cells[position].schema
    if schema is not None:
        # --schema: the parsed answer's fields are columns of the table.
        try:
            answer.data = schema.parse(text)
            row.update(apart_from_table(data_columns(answer.data), "data"))
        except ValueError as error:
            why = (
                "stopped at max tokens before the JSON closed (raise -n)"
                if event.finish_reason == "length"
                else str(error)
            )
            row["error"] = f"--schema {schema.name}: {why}"
    if scoring is not None:  # --score: against the item's label
        row = scoring.scored_row(row, text, answer.data, item.columns)
    result.rows[position] = row
