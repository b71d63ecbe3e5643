"""Run a ``--map`` cell: one request per item, batched, collected into a table.

Items go to the runtime together, 512 prepared at a time: the thread
runtime decodes one model's requests together with mlx-lm's (text) or
mlx-vlm's (vision) continuous batching, ``--batch-size`` at a time. Remote
servers get concurrent requests in chunks of that size (4 by default), and
``--batch-size 1`` sends one item after the other. Each item's answer
becomes a row as soon as it ends; an item that cannot run (an unreadable
image, a prompt that is not text, a prompt too long) is a row with its error.

Everything that would fail for every item (the items, each prompt's
placeholders, ``--out``, the flags, the model) is checked in the cell before
anything runs, ``-b`` included (:func:`plan_map`). An interrupt, while the
prompts are filled in, the items prepared or the answers decoded, cancels
what is in flight and keeps every row: ``_mlx`` is the table either way.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Optional, TypeVar

from mlx_magic.display.map_result import MLXMapResult, new_row, printable
from mlx_magic.display.map_view import MapProgress
from mlx_magic.errors import GenerationInterrupted, UserError
from mlx_magic.magics.background import MapRunHandle
from mlx_magic.magics.drafts import NO_DRAFT
from mlx_magic.magics.judging import check_judge, judge_answers
from mlx_magic.magics.map_rows import collect_rows
from mlx_magic.magics.mapping import (
    MapItem,
    fill_for_item,
    item_images,
    map_items,
)
from mlx_magic.magics.options import CellOptions, PreparedCell, checked_out_name
from mlx_magic.magics.prepare import prepare
from mlx_magic.magics.scoring import (
    Scoring,
    check_field,
    rescored,
    score_earlier_rows,
    scoring_of,
    show_scores,
    summarise,
)
from mlx_magic.magics.session import Session

#: Items prepared (prompt, images, request) and sent at a time: 10,000 items
#: showed their first row after 35 s when all were prepared first. A batch
#: drains at the end of each chunk, which costs little at this size.
PREPARED_AT_ONCE = 512

T = TypeVar("T")


@dataclasses.dataclass
class MapPlan:
    """A checked ``--map`` run, ready to prepare its items and send them.

    Attributes:
        options: the cell's options (``--out``, ``--batch-size``, ``-i``...).
        resolve: how the model name becomes a spec (text or vision).
        vision: whether the items go to a vision model.
        items: every item, in order.
        prompts: the filled-in prompt of each position that runs.
        positions: the items to run (all, or what ``--resume`` left).
        result: the table, every row still ``not run`` (``--resume``: the earlier rows).
        scoring: ``--score``'s checked scorer, if any.
    """

    options: CellOptions
    resolve: Callable
    vision: bool
    items: list[MapItem]
    prompts: dict[int, str]
    positions: list[int]
    result: MLXMapResult
    scoring: Optional[Scoring] = None


def run_map_cell(
    session: Session, options: CellOptions, text: str, resolve: Callable, *, vision: bool
) -> None:
    """``--map`` in the foreground, or with ``-b`` on a helper thread; either
    way every check is made here, in the cell, before anything runs."""
    # Batched: the draft_model setting is not for it.
    options = dataclasses.replace(options, draft=NO_DRAFT)
    plan = plan_map(session, options, text, resolve, vision=vision)
    if plan is None:
        return None
    if not options.background:
        run_map(session, plan)
        return None
    run_map_in_background(session, plan)
    return None


def plan_map(
    session: Session,
    options: CellOptions,
    text: str,
    resolve: Callable,
    *,
    vision: bool,
    earlier: Optional[MLXMapResult] = None,
) -> Optional[MapPlan]:
    """Read the items, fill in every prompt and check the flags and the model:
    what is wrong is one line before anything runs, and changes nothing.

    Returns ``None`` when ``--resume`` finds nothing left to run (it says so,
    and ``_mlx`` is the table). ``earlier``: the table ``--resume`` continues
    (else ``--out``'s, or ``_mlx``'s).

    Raises:
        UserError: bad items, a template that fails for an item, a bad flag or model.
        GenerationInterrupted: an interrupt while the items were read (nothing
            changed) or the prompts filled in (``_mlx`` is the table, no row run).
    """
    namespace = session.shell.user_ns
    name = options.map_items or ""
    if vision and not options.images:
        raise UserError(
            f"%%mlx_vision --map {name}: no -i, so the items never reach the model as images: "
            "add -i {item} (or -i {row.path}); %%mlx --map asks about text"
        )
    if options.batch_size is not None and options.batch_size < 1:
        raise UserError(f"--batch-size must be 1 or more, not {options.batch_size}")
    checked_out_name(options.out)
    try:
        items = map_items(name, namespace, vision=vision)
        scoring = scoring_of(options, items, namespace)
        previous = None
        if options.resume:
            previous = _previous_run(session, options, len(items), earlier)
        scored = scoring is not None
        result = MLXMapResult(
            rows=[new_row(item.columns, scored=scored) for item in items],
            results=[None] * len(items),
            index=[printable(item.index) for item in items],
            items_name=name,
            batch_size=options.batch_size or 1,
            scorer=scoring.described if scoring is not None else "",
        )
        positions = list(range(len(items)))
        if previous is not None:
            positions = previous.unfinished()
            result.rows = [dict(row) for row in previous.rows]
            result.results = list(previous.results)
    except KeyboardInterrupt:
        raise GenerationInterrupted(f"--map stopped while reading {name}: nothing ran") from None
    if previous is not None and not positions:
        if scoring is not None:  # nothing to run, but the answers are scored
            previous = rescored(scoring, previous, result, items, namespace, options.schema)
        _keep(session, options, previous)
        print(
            f"[--resume: every item of {options.out or '_mlx'} has its answer "
            f"({len(previous)} rows); nothing left to run]"
        )
        show_scores(session.shell, previous.scores)
        return None
    try:
        # Every prompt first: a template that fails is one line before anything runs.
        prompts = {p: fill_for_item(text, items[p], namespace, p) for p in positions}
        # The model, the flags and the template's own text (empty?), once, with
        # the template as it is: what fails for it would fail for every item.
        single = prepare(session, _single(options), text, resolve)
        if scoring is not None:
            check_field(scoring, single.schema)
            if scoring.judge is not None:
                check_judge(session, scoring)
    except KeyboardInterrupt:
        _keep(session, options, result)
        raise _stopped(result, positions) from None
    if scoring is not None and previous is not None:
        score_earlier_rows(scoring, previous, result, items, positions)
    return MapPlan(options, resolve, vision, items, prompts, positions, result, scoring)


def _single(options: CellOptions) -> CellOptions:
    """The options of one item's request (its prompt is already filled in)."""
    return dataclasses.replace(
        options, interpolate=False, map_items=None, out=None, background=False
    )


def run_map(
    session: Session,
    plan: MapPlan,
    *,
    stop: Optional[threading.Event] = None,
    shared: Optional[MapProgress] = None,
) -> MLXMapResult:
    """Prepare and run every position of ``plan``; ``_mlx`` (and ``--out``)
    get the :class:`MLXMapResult`. An item that cannot be prepared (its
    image, its prompt) is a failed row. ``shared``: the progress bar of a
    run of several models, which this run neither opens nor closes (nor shows
    its scores: the models' are shown together).

    Raises:
        GenerationInterrupted: the run was interrupted, or ``stop`` was set
            (``%mlx cancel`` of a ``-b`` run), while the items were prepared
            or decoded; the rows so far are kept.
    """
    shell = session.shell
    result, items, positions = plan.result, plan.items, plan.positions
    name = plan.options.map_items or ""
    batch_size = plan.options.batch_size or 0
    started = time.perf_counter()
    progress: Optional[MapProgress] = shared
    interrupted = False
    try:
        if progress is None:
            progress = MapProgress(
                len(positions),
                notebook=getattr(shell, "kernel", None) is not None,
                description=f"--map {name}",
            )
        seed: Optional[int] = None
        # Prepared a chunk at a time: the first rows come while later items
        # (their images too) are not read yet, and memory holds one chunk.
        for start in range(0, len(positions), PREPARED_AT_ONCE):
            chunk = positions[start : start + PREPARED_AT_ONCE]
            cells = _prepare_items(session, plan, chunk, progress, stop)
            seed = _run_cells(
                session, cells, result, items, progress, batch_size, stop, seed, plan.scoring
            )
        if plan.scoring is not None and plan.scoring.judge is not None:
            judge_answers(session, plan.scoring, items, plan.prompts, result, progress, stop)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        result.seconds = time.perf_counter() - started
        for position in positions:  # this run's answers count in %mlx stats too
            if result.results[position] is not None:
                session.record_stats(result.results[position])
        batches = [r.stats.batch_size for r in result.results if r is not None]
        result.batch_size = max(batches, default=1)
        if progress is not None and shared is None:
            progress.close(result.summary)
        if plan.scoring is not None:
            result.scores = summarise(plan.scoring, [row.get("score") for row in result.rows])
            if shared is None:
                show_scores(session.shell, result.scores)
        _keep(session, plan.options, result)
    if interrupted:
        raise _stopped(result, positions)
    return result


def _prepare_items(
    session: Session,
    plan: MapPlan,
    positions: list[int],
    progress: MapProgress,
    stop: Optional[threading.Event],
) -> dict[int, PreparedCell]:
    """Each position's request; one that cannot be made is its row's error."""
    single = _single(plan.options)
    cells: dict[int, PreparedCell] = {}
    for position in positions:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # %mlx cancel of a -b run: stop as an interrupt does
        item = plan.items[position]
        try:
            images = item_images(session, plan.options, item, position) if plan.vision else ()
            cells[position] = prepare(session, single, plan.prompts[position], plan.resolve, images)
        except UserError as error:  # this item's image or prompt: its row says why
            plan.result.rows[position] = new_row(
                item.columns,
                finish_reason="failed",
                error=str(error),
                scored=plan.scoring is not None,
            )
            progress.item_done(plan.result.rows[position], plan.result.index[position])
    return cells


def _keep(session: Session, options: CellOptions, result: MLXMapResult) -> None:
    """The table goes to ``_mlx`` and ``--out``."""
    session.shell.user_ns["_mlx"] = result
    if options.out:
        session.shell.user_ns[options.out] = result


def _stopped(result: MLXMapResult, positions: list[int]) -> GenerationInterrupted:
    """The one line an interrupted (or cancelled) run ends with."""
    return GenerationInterrupted(
        f"--map stopped: {len(positions) - len(result.unfinished())} of {len(positions)} "
        "items done; the table is in _mlx (--resume continues it)"
    )


def _run_cells(
    session: Session,
    cells: dict[int, PreparedCell],
    result: MLXMapResult,
    items: list[MapItem],
    progress: MapProgress,
    batch_size: int,
    stop: Optional[threading.Event],
    seed: Optional[int],
    scoring: Optional[Scoring],
) -> Optional[int]:
    """Send the prepared items, collect each one's events into its row; returns
    the run's seed (``seed``, or else the first item's: drawn, or ``--seed``)."""
    order = list(cells)
    if order:
        # One seed for the whole run, every chunk of it.
        if seed is None:
            seed = cells[order[0]].request.sampling.seed
        for position in order:
            request = cells[position].request
            sampling = dataclasses.replace(request.sampling, seed=seed)
            cells[position] = dataclasses.replace(
                cells[position], request=dataclasses.replace(request, sampling=sampling)
            )
    if not order:
        return seed  # every item failed before it could be sent: their rows say why
    batched = session.settings.runtime != "remote" and batch_size != 1
    chunk = len(order) if batched else max(1, batch_size or 4)
    for start in range(0, len(order), chunk):
        positions = order[start : start + chunk]
        requests = [dataclasses.replace(cells[p].request, batch_size=batch_size) for p in positions]
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # cancelled between chunks: as an interrupt would
        jobs = session.start(*requests)
        collect_rows(dict(zip(positions, jobs)), cells, result, items, progress, stop, scoring)
    return seed


def _previous_run(
    session: Session, options: CellOptions, count: int, earlier: Optional[MLXMapResult] = None
) -> MLXMapResult:
    """The table ``--resume`` continues: ``earlier``, else ``--out NAME``'s, else ``_mlx``'s."""
    namespace = session.shell.user_ns
    name = options.out or "_mlx"
    previous = earlier if earlier is not None else namespace.get(name)
    if not isinstance(previous, MLXMapResult):
        raise UserError(
            f"--resume: {name} holds no --map table to continue; run the --map cell first "
            "(with the same --out)"
        )
    if len(previous) != count:
        raise UserError(
            f"--resume: {name} has {len(previous)} rows but --map {options.map_items} has "
            f"{count} items: resume with the same items"
        )
    return previous


def run_map_in_background(session: Session, plan: MapPlan) -> None:
    """Run ``plan`` on a helper thread and return at once, as a background job
    (``%mlx jobs`` lists it, ``%mlx cancel`` stops it keeping the finished
    rows, ``%mlx wait`` waits); ``_mlx`` and ``--out`` get the table when it ends."""
    label = f"--map {plan.options.map_items}"
    in_background(
        session,
        label,
        plan.options.out,
        lambda stop: run_map(session, plan, stop=stop),
        plan.result,
    )


def in_background(
    session: Session,
    label: str,
    out: Optional[str],
    run: Callable[[threading.Event], T],
    kept: T,
) -> None:
    """Start ``run(stop)`` as a background job; an interrupt (``%mlx cancel``)
    ends it with ``kept``, the table with its finished rows."""
    handle = MapRunHandle()

    def job() -> T:
        try:
            return run(handle.stop)
        except GenerationInterrupted as stopped:
            print(f"[{stopped}]")
            return kept

    entry = session.jobs.start_run(handle, label, job)
    print(
        f"[background job {entry.id}: {label}; the table lands in "
        f"{out or '_mlx'} when it ends; %mlx cancel {entry.id} stops it]"
    )
