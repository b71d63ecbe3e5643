"""Run a ``--map`` cell: one request per item, batched, collected into a table.

Items go to the runtime at once (``generate_together``): the thread
runtime decodes one model's requests together with mlx-lm's (text) or
mlx-vlm's (vision) continuous batching, ``--batch-size`` at a time. Remote
servers get concurrent requests in chunks of that size (4 by default), and
``--batch-size 1`` sends one item after the other. Each item's answer
becomes a row as soon as it ends; an item that cannot run (an unreadable
image, a prompt too long) is a row with its error. An interrupt cancels what is in flight and keeps every row.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Optional

from mlx_magic.display.map_result import MLXMapResult, new_row
from mlx_magic.display.map_view import MapProgress
from mlx_magic.display.result import MLXResult, TokenInfo
from mlx_magic.errors import GenerationInterrupted, UserError
from mlx_magic.magics.drafts import NO_DRAFT
from mlx_magic.magics.mapping import (
    MapItem,
    apart_from_table,
    fill_for_item,
    image_source_for_item,
    map_items,
)
from mlx_magic.magics.options import CellOptions, PreparedCell
from mlx_magic.magics.prepare import load_cell_images, prepare
from mlx_magic.magics.schemas import data_columns
from mlx_magic.magics.session import Session
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.provenance import provenance_record
from mlx_magic.vocabulary.values import Failed, Finished, TokenChunk

#: How long to wait for in-flight items to confirm a cancel.
_CANCEL_GRACE_S = 30.0


def check_map_flags(args, columns: int) -> bool:
    """Whether the cell is a ``--map`` run; flags that do not go with it are one line."""
    if args.map is None:
        if args.batch_size is not None or args.resume:
            raise UserError("--batch-size and --resume are for --map ITEMS")
        return False
    if columns > 1:
        raise UserError("--map runs one model and one sampler: give one -m, --temp and --seed")
    if args.chat is not None:
        raise UserError("--map: each item is its own question; leave out --chat")
    if getattr(args, "video", None) is not None:
        raise UserError("--map takes images (-i {item}), not a video")
    if args.probs:
        raise UserError("--map: --probs shows one answer's tokens; leave it out")
    if args.draft is not None and args.draft.lower() != NO_DRAFT:
        raise UserError(
            "--map decodes its items together (batched); --draft decodes one answer at a "
            "time: keep one"
        )
    return True


def run_map_cell(session: Session, options: CellOptions, text: str, resolve, *, vision: bool):
    """``--map`` in the foreground, or with ``-b`` on a helper thread."""
    # Batched: the draft_model setting is not for it.
    options = dataclasses.replace(options, draft=NO_DRAFT)
    if not options.background:
        run_map(session, options, text, resolve, vision=vision)
        return None
    return run_map_in_background(session, options, text, resolve, vision=vision)


def run_map(
    session: Session,
    options: CellOptions,
    text: str,
    resolve: Callable,
    *,
    vision: bool,
    stop: Optional[threading.Event] = None,
) -> MLXMapResult:
    """Run ``text`` once per item of ``options.map_items``; ``_mlx`` (and
    ``--out``) get the :class:`MLXMapResult`.

    Raises:
        UserError: bad items, a template that fails for an item, a bad batch size.
        GenerationInterrupted: the run was interrupted, or ``stop`` was set
            (``%mlx cancel`` of a ``-b`` run); the rows so far are kept.
    """
    shell = session.shell
    namespace = shell.user_ns
    name = options.map_items or ""
    if options.batch_size is not None and options.batch_size < 1:
        raise UserError(f"--batch-size must be 1 or more, not {options.batch_size}")
    items = map_items(name, namespace, vision=vision)
    # Every prompt first: a template that fails is one line before anything runs.
    prompts = [fill_for_item(text, item, namespace, i) for i, item in enumerate(items)]
    previous = _previous_run(session, options, len(items)) if options.resume else None
    rows = [new_row(item.columns) for item in items]
    results: list[Optional[MLXResult]] = [None] * len(items)
    positions = list(range(len(items)))
    if previous is not None:
        positions = previous.unfinished()
        rows = [dict(row) for row in previous.rows]
        results = list(previous.results)
    single = dataclasses.replace(
        options, interpolate=False, map_items=None, out=None, background=False
    )
    cells: dict[int, PreparedCell] = {}
    for position in positions:
        columns = items[position].columns
        try:
            images = _item_images(session, options, items[position], position) if vision else ()
        except UserError as error:  # this item's image: its row says why
            rows[position] = new_row(columns, finish_reason="failed", error=str(error))
            continue
        try:
            cells[position] = prepare(session, single, prompts[position], resolve, images)
        except UserError as error:
            if not cells:
                raise  # the model or a flag is wrong: nothing would run
            rows[position] = new_row(columns, finish_reason="failed", error=str(error))
    batch_size = options.batch_size or 0
    result = MLXMapResult(
        rows=rows,
        results=results,
        index=[item.index for item in items],
        items_name=name,
        batch_size=batch_size or 1,
    )
    progress = MapProgress(
        len(positions),
        notebook=getattr(shell, "kernel", None) is not None,
        description=f"--map {name}",
    )
    for position in positions:
        if position not in cells:
            progress.item_done(rows[position], items[position].index)
    started = time.perf_counter()
    interrupted = False
    try:
        _run_cells(session, cells, result, items, progress, batch_size=batch_size, stop=stop)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        result.seconds = time.perf_counter() - started
        batches = [r.stats.batch_size for r in result.results if r is not None]
        result.batch_size = max(batches, default=1)
        progress.close(result.summary)
        shell.user_ns["_mlx"] = result
        if options.out:
            shell.user_ns[options.out] = result
    if interrupted:
        raise GenerationInterrupted(
            f"--map stopped: {len(positions) - len(result.unfinished())} of {len(positions)} "
            "items done; the table is in _mlx (--resume continues it)"
        )
    return result


def _run_cells(session, cells, result, items, progress, *, batch_size, stop) -> None:
    """Send the prepared items, collect each one's events into its row."""
    order = list(cells)
    if order:
        # One seed for the whole run (drawn, or --seed).
        seed = cells[order[0]].request.sampling.seed
        for position in order:
            request = cells[position].request
            sampling = dataclasses.replace(request.sampling, seed=seed)
            cells[position] = dataclasses.replace(
                cells[position], request=dataclasses.replace(request, sampling=sampling)
            )
    batched = session.settings.runtime != "remote" and batch_size != 1
    chunk = len(order) if batched else max(1, batch_size or 4)
    for start in range(0, len(order), chunk):
        positions = order[start : start + chunk]
        requests = [dataclasses.replace(cells[p].request, batch_size=batch_size) for p in positions]
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # cancelled between chunks: as an interrupt would
        jobs = session.runtime.generate_together(requests)
        _collect(dict(zip(positions, jobs)), cells, result, items, progress, stop)


def _collect(jobs: dict[int, Job], cells, result, items, progress, stop=None) -> None:
    """Read every job's events until all have ended; rows fill in as they do."""
    texts: dict[int, list[str]] = {p: [] for p in jobs}
    tokens: dict[int, list[TokenInfo]] = {p: [] for p in jobs}
    started = {p: time.perf_counter() for p in jobs}
    open_jobs = dict(jobs)
    try:
        while open_jobs:
            quiet = True
            for position, job in list(open_jobs.items()):
                while True:
                    event = job.next_event(0)
                    if event is None:
                        break
                    quiet = False
                    if isinstance(event, TokenChunk):
                        texts[position].append(event.text)
                        tokens[position].extend(TokenInfo(id=int(t)) for t in event.token_ids)
                    elif isinstance(event, (Finished, Failed)):
                        _record(position, event, texts, tokens, started, cells, result, items)
                        # Closed before the progress bar is told: an interrupt
                        # that lands in it must not wait for this job again.
                        del open_jobs[position]
                        progress.item_done(result.rows[position], items[position].index)
                        break
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt  # %mlx cancel of a -b run: stop as an interrupt does
            if quiet:
                time.sleep(0.02)
    except KeyboardInterrupt:
        for job in open_jobs.values():
            job.cancel()
        deadline = time.monotonic() + _CANCEL_GRACE_S
        for position, job in open_jobs.items():
            while time.monotonic() < deadline:
                event = job.next_event(0.1)
                if isinstance(event, TokenChunk):
                    texts[position].append(event.text)
                elif isinstance(event, (Finished, Failed)):
                    _record(position, event, texts, tokens, started, cells, result, items)
                    break
        raise


def _record(position, event, texts, tokens, started, cells, result, items) -> None:
    item = items[position]
    if isinstance(event, Failed):
        result.rows[position] = new_row(item.columns, finish_reason="failed", error=event.message)
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
    row = new_row(item.columns, finish_reason=event.finish_reason)
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
    result.rows[position] = row


def _item_images(session: Session, options: CellOptions, item: MapItem, position: int):
    """The images ``-i`` names for one item (``-i {item}``, ``-i {row.path}``)."""
    namespace = session.shell.user_ns
    sources: list[str] = []
    hidden: dict[str, object] = {}
    for source in options.images:
        filled, value = image_source_for_item(source, item, namespace, position)
        if value is not None:
            name = f"{filled}_{len(hidden)}"
            hidden[name] = value
            filled = name
        sources.append(filled)
    if hidden:
        namespace.update(hidden)
    try:
        return tuple(load_cell_images(session, tuple(sources), options.region))
    finally:
        for name in hidden:
            namespace.pop(name, None)


def _previous_run(session: Session, options: CellOptions, count: int) -> Optional[MLXMapResult]:
    """The table ``--resume`` continues: ``--out NAME``'s, else ``_mlx``'s."""
    namespace = session.shell.user_ns
    name = options.out or "_mlx"
    previous = namespace.get(name)
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


def run_map_in_background(session: Session, options: CellOptions, text: str, resolve, *, vision):
    """Start the run on a helper thread and return at once, as a background job
    (``%mlx jobs`` lists it, ``%mlx cancel`` stops it keeping the finished
    rows, ``%mlx wait`` waits); ``_mlx`` and ``--out`` get the table when it ends."""
    # Checked here, in the cell: a mistake is one line, not a dead thread.
    map_items(options.map_items or "", session.shell.user_ns, vision=vision)
    if options.batch_size is not None and options.batch_size < 1:
        raise UserError(f"--batch-size must be 1 or more, not {options.batch_size}")
    handle = MapRunHandle()

    def run() -> MLXMapResult:
        try:
            return run_map(session, options, text, resolve, vision=vision, stop=handle.stop)
        except GenerationInterrupted as stopped:
            print(f"[{stopped}]")
            return session.shell.user_ns["_mlx"]  # the table, with its finished rows

    entry = session.jobs.start_run(handle, f"--map {options.map_items}", run)
    print(
        f"[background job {entry.id}: --map {options.map_items}; the table lands in "
        f"{options.out or '_mlx'} when it ends; %mlx cancel {entry.id} stops it]"
    )
    return None


class MapRunHandle:
    """What ``%mlx cancel`` stops for a ``-b`` ``--map`` run."""

    def __init__(self):
        self.stop = threading.Event()

    def cancel(self) -> None:
        self.stop.set()

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()
