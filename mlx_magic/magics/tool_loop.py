"""The tool loop of ``%%mlx --tools``: the model answers, its calls run in the
kernel, their results go back as ``tool`` turns, and the model goes on, until
it answers without a call or ``--max-steps`` rounds of calls have run.

Every generation of the loop starts with :meth:`Session.start
<mlx_magic.magics.session.Session.start>` and streams through
:func:`~mlx_magic.display.streaming.stream_job`; the engine parses the calls
with the model family's own parser (mlx-lm's) and hands them back as a
:class:`~mlx_magic.vocabulary.tools.ToolCallsFound`. Each turn's prompt begins
with the previous turn's prompt and answer, so the prefix cache reads only
the new tokens (the calls as the template writes them, and their results).

Nothing runs that the user did not offer (a call to another name is refused
and the model told); arguments are validated first (:mod:`.tools`); by
default each call waits for **Run** / **Skip** (:mod:`~mlx_magic.display.steps_view`);
a call runs on a helper thread, stopped as far as Python allows (a
``KeyboardInterrupt`` raised in it) when it outlives ``tool_timeout_s`` or the
kernel is interrupted.

With a server (``%mlx connect``) the same loop runs: the remote runtime sends
the schemas as OpenAI ``tools`` and the turns as OpenAI messages, and
announces the streamed ``tool_calls`` as the same ``ToolCallsFound``
(:mod:`mlx_magic.runtime.remote.tool_wire`); a call keeps the server's id.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Optional

from mlx_magic.display.steps_view import StepView, clicks_reach_a_running_cell
from mlx_magic.display.streaming import stream_job
from mlx_magic.display.views import view_for, widgets_usable
from mlx_magic.errors import (
    GenerationFailed,
    GenerationInterrupted,
    UserError,
    one_line,
)
from mlx_magic.magics.run import raise_failure, renders_markdown
from mlx_magic.magics.tools import OfferedTool, offered_tools
from mlx_magic.vocabulary.tools import (
    ProposedCall,
    ToolCallsFound,
    ToolStep,
    ToolUse,
)

if TYPE_CHECKING:
    import argparse

    from mlx_magic.display.result import MLXResult
    from mlx_magic.magics.options import CellOptions, PreparedCell
    from mlx_magic.magics.session import Session

#: How often the wait for a running call wakes up (an interrupt lands at once).
_POLL_S = 0.1
#: How long a stopped call is given to end before the cell goes on without it.
_STOP_GRACE_S = 1.0


def check_tools_flags(args: argparse.Namespace, columns: int, runtime: str, shell: Any) -> None:
    """``--tools`` and its flags make sense together (one line if not)."""
    uses = [flag for flag, on in (("--max-steps", args.max_steps is not None),
            ("--auto", args.auto), ("--show-prompt", args.show_prompt)) if on]  # fmt: skip
    if args.tools is None:
        if uses:
            raise UserError(f"{uses[0]} goes with --tools NAMES: add the functions to offer")
        return
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, not {args.max_steps}")
    for flag, given in (
        ("--map", args.map),
        ("--raw", args.raw),
        ("--schema", args.schema),
        ("--lens", args.lens is not None),
        ("--attention", args.attention is not None),
    ):
        if given:
            raise UserError(f"--tools works without {flag} for now: leave one out")
    if columns > 1:
        raise UserError("--tools runs one model at a time: give one -m, --temp and --seed")
    if runtime == "remote" and args.show_prompt:
        raise UserError(
            "--show-prompt needs a local model: a server renders the prompt with its own "
            "template and does not send it back (leave --show-prompt out)"
        )
    if not args.auto and not widgets_usable(shell, warn=False):
        raise UserError(
            "--tools asks before each call with Run/Skip buttons, which need a notebook with "
            "ipywidgets: add --auto to run the model's calls without asking"
        )
    if not args.auto and not clicks_reach_a_running_cell():
        raise UserError(
            "--tools asks before each call with Run/Skip buttons, whose clicks reach a running "
            "cell from ipykernel 7 on: pip install -U ipykernel, or add --auto"
        )


def run_tools_cell(
    session: Session,
    options: CellOptions,
    text: str,
    decide: Optional[Callable[[ToolStep], bool]] = None,
) -> None:
    """Offer the functions ``options.tools`` names and run the loop in the cell;
    ``_mlx`` is the last answer, ``_mlx.steps`` every call.

    ``decide`` confirms a call (True: run it); by default Run / Skip buttons
    do, or nothing asks (``--auto``). With ``-b`` the loop runs on a helper
    thread as a background job and the cell returns at once.
    """
    from mlx_magic.magics.prepare import prepare

    tools = offered_tools(options.tools or "", session.shell.user_ns, session.mcp_servers.find)
    cell = prepare(session, options, text, session.resolve, cell_id=session.cell_id)
    if not options.background:
        _run_loop(session, cell, tools, options, decide, LoopHandle())
        return
    handle = LoopHandle()
    # The cell's context (ipykernel keeps the cell's parent message in a ContextVar): what the
    # loop shows from its thread lands in this cell, not in the cell running at the time.
    context = contextvars.copy_context()

    def loop() -> Optional[MLXResult]:
        try:
            return context.run(_run_loop, session, cell, tools, options, decide, handle)
        except GenerationInterrupted as stopped:
            context.run(print, f"[{stopped}]", flush=True)
            return handle.last

    entry = session.jobs.start_run(handle, f"--tools {options.tools}", loop)
    print(
        f"[background job {entry.id}: the model calls {options.tools}; the answer lands in "
        f"{cell.out_name or '_mlx'}; %mlx wait {entry.id} waits, %mlx cancel {entry.id} stops it]"
    )


class LoopHandle:
    """What ``%mlx cancel`` stops in a ``-b`` tool loop (a ``Cancellable``): the turn
    being generated, a call waiting for Run / Skip (skipped), a call running (as an
    interrupt would); the loop then ends with the steps so far."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.job: Any = None  # the runtime job of the turn being generated
        self.view: Optional[StepView] = None  # the step waiting for a click
        self.last: Optional[MLXResult] = None  # the latest answer, kept when stopped

    def cancel(self) -> None:
        self.stop.set()
        job, view = self.job, self.view
        if job is not None:
            job.cancel()
        if view is not None:
            view.choose(False)

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()


def _run_loop(
    session: Session,
    cell: PreparedCell,
    tools: list[OfferedTool],
    options: CellOptions,
    decide: Optional[Callable[[ToolStep], bool]],
    handle: LoopHandle,
) -> MLXResult:
    """Turns of the model and its calls until it answers without one (or
    ``--max-steps``); returns the last answer."""
    shell = session.shell
    in_kernel = getattr(shell, "kernel", None) is not None
    ask = not options.auto
    by_name = {tool.name: tool for tool in tools}
    offer = ToolUse(tuple(tool.schema for tool in tools), (), options.show_prompt)
    max_steps = options.max_steps
    steps: list[ToolStep] = []
    turns: list[dict] = []
    number = 0
    while True:
        number += 1
        request = replace(cell.request, tools=replace(offer, turns=tuple(turns)))
        result = _generate(session, cell, request, steps, handle)
        found = result.tool_calls
        if found is None or not found.calls:
            break
        session.record_stats(result)  # the last answer is recorded with the cell, below
        if number > max_steps:
            view_for(shell).notice(
                f"Stopped after {max_steps} step(s) of calls: the last answer's "
                f"{len(found.calls)} call(s) did not run (raise --max-steps)"
            )
            break
        # A server's ids are kept (some check that a result names the call it answers).
        ids = [call.id or f"call_{number}_{index}" for index, call in enumerate(found.calls)]
        turns.append(_assistant_turn(found, ids))
        for call, call_id in zip(found.calls, ids):
            step = ToolStep(name=call.name, arguments=dict(call.arguments), step=number)
            steps.append(step)
            try:
                _take_step(step, call, by_name, session, in_kernel, ask, decide, handle)
            except KeyboardInterrupt:
                _keep(session, cell, result, steps)
                raise GenerationInterrupted(
                    f"stopped at step {number} ({call.name}); the steps so far are in _mlx.steps"
                ) from None
            turns.append({"role": "tool", "tool_call_id": call_id, "name": step.name,
                          "content": step.reply()})  # fmt: skip
        if handle.cancelled:
            _keep(session, cell, result, steps)
            raise GenerationInterrupted(
                f"cancelled after step {number}; the steps so far are in _mlx.steps"
            )
    _keep(session, cell, result, steps)
    # The last turn's request (its tools and tool turns): %mlx replay makes that answer again;
    # with --chat the conversation keeps the calls and results as turns of their own.
    session.record_finished(replace(cell, request=request), result)
    session.apply_format(result, cell, set_next_input=not options.background)
    return result


def _generate(
    session: Session, cell: PreparedCell, request: Any, steps: list[ToolStep], handle: LoopHandle
) -> MLXResult:
    """One turn of the model, streamed into the cell."""
    shell = session.shell
    view = view_for(shell)
    view.markdown = renders_markdown(session, cell)
    (job,) = session.start(request)
    handle.job = job
    if handle.cancelled:  # %mlx cancel came between two turns
        job.cancel()
    try:
        outcome = stream_job(job, view, interval_s=session.stream_interval_s)
    except GenerationFailed as failed:
        raise_failure(session, failed.failure)
    finally:
        handle.job = None
    result = handle.last = outcome.result
    try:
        if request.top_logprobs and result.tokens:
            from mlx_magic.display.probability_view import probability_bundle

            view.show_bundle(probability_bundle(result, request.sampling))
        if outcome.interrupted or handle.cancelled:
            session.record_stats(result)
            _keep(session, cell, result, steps)
            raise GenerationInterrupted(
                f"generation stopped after {result.stats.generation_tokens} tokens; the "
                "partial answer is in _mlx, the steps so far in _mlx.steps"
            )
    finally:
        outcome.shield.release()
    return result


def _keep(session: Session, cell: PreparedCell, result: MLXResult, steps: list[ToolStep]) -> None:
    result.steps = steps
    session.shell.user_ns["_mlx"] = result
    if cell.out_name:
        session.shell.user_ns[cell.out_name] = result


def _assistant_turn(found: ToolCallsFound, ids: list[str]) -> dict:
    """The answer as the template writes it back: its text and its calls."""
    calls = [
        {"id": call_id, "type": "function",
         "function": {"name": call.name, "arguments": dict(call.arguments)}}
        for call, call_id in zip(found.calls, ids)
    ]  # fmt: skip
    return {"role": "assistant", "content": found.content, "tool_calls": calls}


def _take_step(
    step: ToolStep,
    call: ProposedCall,
    by_name: dict[str, OfferedTool],
    session: Session,
    in_kernel: bool,
    ask: bool,
    decide: Optional[Callable[[ToolStep], bool]],
    handle: LoopHandle,
) -> None:
    """Check one call, confirm it, run it; ``step`` records how it went."""
    tool = by_name.get(call.name)
    arguments: dict = {}
    if call.error is not None:
        written = one_line(call.text, 200)
        step.state, step.error = "invalid", f"{call.error}: {written}"
    elif tool is None:
        offered = ", ".join(sorted(by_name))
        step.state = "refused"
        step.error = f"no function {call.name!r} is offered (offered: {offered})"
    else:
        try:
            arguments = tool.check(step.arguments)
        except ValueError as error:
            step.state, step.error = "invalid", f"{error}; the call did not run"
    buttons = ask and decide is None and step.state == "asked"
    view = StepView(step, in_kernel=in_kernel, buttons=buttons)
    if handle.cancelled and step.state == "asked":
        step.state, step.error = "interrupted", "cancelled before it ran"
    if step.state != "asked" or tool is None:
        view.done()
        return
    try:
        handle.view = view
        try:
            chosen = not ask or (decide(step) if decide is not None else view.decide())
        finally:
            handle.view = None
        if not chosen or handle.cancelled:
            step.state = "skipped" if not handle.cancelled else "interrupted"
            step.error = None if not handle.cancelled else "cancelled before it ran"
            view.done()
            return
        view.running()
        run_call(step, tool, arguments, session.settings.tool_timeout_s, handle.stop)
    except KeyboardInterrupt:
        if step.state == "asked":
            step.state, step.error = "interrupted", "interrupted before it ran"
        view.done()
        raise
    view.done()


def run_call(
    step: ToolStep,
    tool: OfferedTool,
    arguments: dict,
    timeout_s: float,
    stop: Optional[threading.Event] = None,
) -> None:
    """Run the call on a helper thread and wait for it, at most ``timeout_s``.

    A call still running then (or when the kernel is interrupted) gets a
    ``KeyboardInterrupt`` raised inside it, as the stop button would: it ends
    Python code at its next line (a call blocked in C, when that returns), and
    a tool's ``except Exception`` does not swallow it. The cell waits a moment
    for it, then goes on without it. ``stop`` (``%mlx cancel`` of a ``-b`` loop)
    stops it the same way.
    """
    outcome: dict[str, Any] = {}
    ended = threading.Event()

    def call() -> None:
        try:
            outcome["result"] = tool.function(**arguments)
        except BaseException as error:  # noqa: BLE001 - the model reads it in one line
            outcome["error"] = error
        finally:
            ended.set()

    worker = threading.Thread(target=call, name=f"mlx_magic-tool-{tool.name}", daemon=True)
    started = time.perf_counter()
    try:
        worker.start()  # an interrupt may land while it starts: inside the try
        while not ended.wait(_POLL_S):
            if stop is not None and stop.is_set():
                _stop(worker, ended)
                step.seconds = time.perf_counter() - started
                step.state, step.error = "interrupted", "the background job was cancelled"
                return
            if time.perf_counter() - started >= timeout_s:
                _stop(worker, ended)
                step.seconds = time.perf_counter() - started
                step.state = "timed out"
                step.error = (
                    f"{tool.name} ran past {timeout_s:g} s (MLXMagics.tool_timeout_s) and was "
                    "stopped"
                )
                return
    except KeyboardInterrupt:
        _stop(worker, ended)
        step.seconds = time.perf_counter() - started
        step.state, step.error = "interrupted", "the kernel was interrupted while it ran"
        raise
    step.seconds = time.perf_counter() - started
    if "error" in outcome:
        error = outcome["error"]
        step.state = "failed"
        step.error = one_line(f"{type(error).__name__}: {error}".rstrip(": "), 300)
        return
    step.state, step.result = "ran", outcome.get("result")


def _stop(worker: threading.Thread, ended: threading.Event) -> None:
    """Raise ``KeyboardInterrupt`` in ``worker`` (as far as Python allows), wait a moment."""
    if worker.ident is not None and not ended.is_set():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(KeyboardInterrupt)
        )
    ended.wait(_STOP_GRACE_S)
