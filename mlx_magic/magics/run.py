"""Running a cell's generations and recording what came of them.

Cells, ``-b`` cells and the chat panel build
:class:`~mlx_magic.magics.options.PreparedCell` values the same way and come
here: a cell in the foreground (:func:`run_foreground`), a ``-b`` cell or the
panel in the background (:func:`run_background`), several columns side by
side (:func:`run_columns`). Each records its result in the session the same
way (stats, conversation turn, ``_mlx``, ``--out``). ``--map`` runs many
prepared cells in batches (:mod:`.map_run`); ``%mlx branch`` and ``%mlx
replay`` send a request derived from an earlier answer (:mod:`.branching`,
:mod:`.replay`). Every one starts its generations with
:meth:`Session.start <mlx_magic.magics.session.Session.start>` and reads their
events in :func:`~mlx_magic.display.following.follow` (through
:mod:`~mlx_magic.display.streaming` for what is shown as it streams).
"""

from __future__ import annotations

from typing import Callable, Optional

from mlx_magic.display.result import MLXResults
from mlx_magic.display.streaming import stream_job, stream_jobs
from mlx_magic.display.views import CollectingView, StreamView, view_for, widgets_usable
from mlx_magic.errors import GenerationFailed, GenerationInterrupted, UserError
from mlx_magic.magics.attention import attention_after_answer
from mlx_magic.magics.background import BackgroundJob
from mlx_magic.magics.lens import lens_after_answer
from mlx_magic.magics.marking import name_marks, show_previews
from mlx_magic.magics.options import PreparedCell
from mlx_magic.magics.session import Session
from mlx_magic.vocabulary.values import Failed

#: Most columns one side-by-side cell may have.
MAX_COLUMNS = 6


def run_foreground(session: Session, cell: PreparedCell) -> None:
    """Stream the answer into the cell; the kernel thread waits here, so an
    interrupt lands here and stops the generation."""
    shell = session.shell
    view = view_for(shell)
    view.markdown = renders_markdown(session, cell)
    if cell.images:
        # Before the job: previews must not wait for the model.
        show_previews(session, view, cell)
    (job,) = session.start(cell.request)
    try:
        outcome = stream_job(
            job,
            view,
            interval_s=session.stream_interval_s,
            images=cell.images,
            grounding=session.settings.grounding,
        )
    except GenerationFailed as failed:
        raise_failure(session, failed.failure)
    result = outcome.result
    name_marks(view, cell, result)
    try:
        shell.user_ns["_mlx"] = result
        session.record_finished(cell, result)
        if cell.request.top_logprobs and result.tokens:
            from mlx_magic.display.probability_view import probability_bundle

            view.show_bundle(probability_bundle(result, cell.request.sampling))
            if getattr(shell, "kernel", None) is not None and cell.request.model.kind == "text":
                from IPython.display import display

                from mlx_magic.magics.branch_picker import BranchPicker

                display(BranchPicker(session, result).widget)  # "Branch here"
        if outcome.interrupted:
            if cell.out_name:
                shell.user_ns[cell.out_name] = result
            raise GenerationInterrupted(
                f"generation stopped after {result.stats.generation_tokens} tokens; "
                "the partial answer is in _mlx"
            )
    finally:
        outcome.shield.release()
    session.apply_format(result, cell)
    if cell.options.lens is not None:  # --lens: what each layer would have said
        lens_after_answer(session, result, view, cell.options.lens)
    if cell.options.attention is not None:  # --attention: where it looked
        attention_after_answer(session, result, view, cell.options.attention)


def run_background(
    session: Session,
    cell: PreparedCell,
    view: Optional[StreamView] = None,
    on_done: Optional[Callable[[BackgroundJob], None]] = None,
) -> BackgroundJob:
    """Start the generation and follow it on a helper thread; returns at once.

    ``view`` shows the answer (by default a widget in this cell, or the cell's
    stream where widgets cannot show); ``on_done`` runs after the result is
    recorded (the panel re-enables its buttons there).
    """
    shell = session.shell
    announce = view is None
    previews: StreamView = CollectingView()  # where the cell's previews are, if shown
    if view is None:
        if widgets_usable(shell):
            from mlx_magic.display.widget_view import WidgetStreamView

            view = WidgetStreamView(cell.request.model.name)
            if cell.images:
                previews = view_for(shell)
                show_previews(session, previews, cell)
            view.display()
        else:
            view = previews = view_for(shell)
            view.markdown = renders_markdown(session, cell)
            if cell.images:
                show_previews(session, view, cell)
    (job,) = session.start(cell.request)

    def done(entry: BackgroundJob) -> None:
        if entry.result is not None:
            name_marks(previews, cell, entry.result)
            session.record_finished(cell, entry.result)
            try:
                session.apply_format(entry.result, cell, set_next_input=False)
            except UserError as error:
                if entry.view is not None:
                    entry.view.notice(str(error))
        if on_done is not None:
            on_done(entry)

    entry = session.jobs.start(
        job,
        view,
        interval_s=session.stream_interval_s,
        on_done=done,
        images=cell.images,
        grounding=session.settings.grounding,
    )
    if announce:
        print(
            f"[background job {entry.id}: %mlx jobs lists it, %mlx wait {entry.id} waits, "
            f"%mlx cancel {entry.id} stops it]"
        )
    return entry


def run_columns(session: Session, cells: list[PreparedCell]) -> None:
    """Several generations advancing together, token by token, one column each.

    Columns of one text model share forward passes (batched decoding) when
    they share a seed: a sweep without ``--seed`` draws one for all its columns.
    """
    if all(cell.options.seed is None for cell in cells):
        cells = shared_seed(cells)
    shell = session.shell
    titles = [column_title(cell, cells) for cell in cells]
    in_kernel = widgets_usable(shell)
    if cells[0].images:
        show_previews(session, view_for(shell), cells[0])
    if in_kernel:
        from mlx_magic.display.widget_view import ColumnsView

        columns = ColumnsView(titles)
        columns.display()
        views: list[StreamView] = list(columns.columns)
    else:
        views = [CollectingView() for _ in titles]
    jobs = session.start(*(cell.request for cell in cells))
    outcomes = stream_jobs(jobs, views, interval_s=session.stream_interval_s)
    results = MLXResults()
    shown = []
    failures: list[Failed] = []
    for title, outcome in zip(titles, outcomes):
        if isinstance(outcome, GenerationFailed):
            failures.append(outcome.failure)
            shown.append((title, "", f"✖ {outcome.failure.message}"))
            continue
        outcome.result.model = title
        results.append(outcome.result)
        session.record_stats(outcome.result)
        shown.append((title, outcome.result.text, outcome.result.footer))
    if in_kernel:
        columns.finish(shown)
    else:
        for title, text, footer in shown:
            print(f"── {title} ──\n{text}\n[{footer}]")
    shell.user_ns["_mlx"] = results
    if cells[0].out_name:
        shell.user_ns[cells[0].out_name] = results
    if any(getattr(outcome, "interrupted", False) for outcome in outcomes):
        raise GenerationInterrupted("generation stopped; the partial answers are in _mlx")
    if not results:
        raise UserError(f"Every column failed: {failures[0].message}")


def renders_markdown(session: Session, cell: PreparedCell) -> bool:
    """Whether the answer is rendered as it streams: ``-f markdown`` and
    ``-f code``, or no ``-f`` with the ``default_format`` setting at
    'markdown'; ``-f text`` and ``-f json`` stream plain text."""
    answer_format = cell.options.answer_format or session.settings.default_format
    return answer_format in ("markdown", "code")


def column_title(cell: PreparedCell, cells: list[PreparedCell]) -> str:
    """The model, plus the settings that differ between columns."""
    parts = [cell.request.model.name]
    if len({other.options.temperature for other in cells}) > 1:
        parts.append(f"temp {cell.request.sampling.temperature:g}")
    if len({other.options.seed for other in cells}) > 1:
        parts.append(f"seed {cell.request.sampling.seed}")
    return " · ".join(parts)


def check_columns(count: int, chat: Optional[str], background: bool) -> None:
    """Side by side works on plain cells, and on a few columns."""
    if chat is not None or background:
        raise UserError(
            "Side by side (several -m, --temp or --seed) works without --chat and --background"
        )
    if count > MAX_COLUMNS:
        raise UserError(
            f"{count} columns is more than {MAX_COLUMNS}: compare fewer models or settings at once"
        )


def shared_seed(cells: list[PreparedCell]) -> list[PreparedCell]:
    """The cells with one seed (the first drawn one), so that they may be batched."""
    import dataclasses

    seed = next((c.request.sampling.seed for c in cells if c.request.sampling.seed), None)
    return [
        dataclasses.replace(
            cell,
            request=dataclasses.replace(
                cell.request, sampling=dataclasses.replace(cell.request.sampling, seed=seed)
            ),
        )
        for cell in cells
    ]


def raise_failure(session: Session, failure: Failed) -> None:
    """A failed generation, as the user should see it: one line for what they
    can fix (and, with ``short_errors``, for everything); else the traceback."""
    if failure.user_error:
        raise UserError(failure.message) from failure.error
    if session.settings.short_errors:
        raise UserError(
            f"Generation failed: {failure.message} "
            "(%config MLXMagics.short_errors = False shows the traceback)"
        ) from failure.error
    raise failure.error or RuntimeError(failure.message)
