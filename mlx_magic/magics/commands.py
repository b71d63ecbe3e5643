"""The ``%mlx`` commands: models, runtime status, caches, conversations, stats.

Each ``command_<name>(magics, names)`` serves ``%mlx <name> [names…]`` for
the :class:`~mlx_magic.magics.mlx_magics.MLXMagics` instance ``magics``.
"""

from __future__ import annotations

import html
import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_magic.errors import GenerationInterrupted, ModelLoadError, UserError
from mlx_magic.magics.attention import command_attention
from mlx_magic.magics.branching import command_branch
from mlx_magic.magics.cache_commands import command_cache, disk_status_line
from mlx_magic.magics.conversations import DEFAULT_CONVERSATION
from mlx_magic.magics.downloads import command_pull, command_rm
from mlx_magic.magics.embedding import command_embed
from mlx_magic.magics.lens import command_lens
from mlx_magic.magics.marking import command_marks
from mlx_magic.magics.mcp_servers import command_tools
from mlx_magic.magics.nearest import command_nearest, command_plot
from mlx_magic.magics.replay import command_replay
from mlx_magic.magics.segmenting import command_segment
from mlx_magic.magics.session import say_if_busy
from mlx_magic.units import gib

if TYPE_CHECKING:
    from mlx_magic.magics.background import BackgroundJob
    from mlx_magic.magics.session import MagicsHost


def command_load(magics: MagicsHost, names: list[str]) -> None:
    if not names:
        raise UserError("%mlx load needs a model, e.g. %mlx load smollm2")
    say_if_busy(magics.session, "loading")
    for name in names:
        spec = magics.session.resolve(name)
        started = time.perf_counter()
        info = magics.session.runtime.load(spec)
        took = time.perf_counter() - started
        print(
            f"{info.name}: {info.kind} model, {gib(info.memory_bytes):.2f} GiB, "
            f"ready in {took:.1f} s"
        )


def command_unload(magics: MagicsHost, names: list[str]) -> None:
    session = magics.session
    say_if_busy(session, "unloading")
    if not names or names == ["all"]:
        removed = magics.session.runtime.unload(None) if magics.session.runtime_started else []
    else:
        removed = []
        for name in names:
            removed += magics.session.runtime.unload(magics.session.resolve(name).key)
    print(f"Unloaded {len(removed)} model(s)" + (f": {', '.join(removed)}" if removed else ""))


def command_models(magics: MagicsHost, names: list[str]) -> None:
    infos = magics.session.runtime.models() if magics.session.runtime_started else []
    if not infos:
        print(
            "No warm models. %%mlx loads one on first use; %mlx load MODEL loads one now; "
            "%mlx models --local lists those on disk."
        )
        return
    width = max(len(info.name) for info in infos)
    print(f"{'model':<{width}}  {'kind':<9}  memory     uses  source")
    for info in infos:
        print(
            f"{info.name:<{width}}  {info.kind:<9}  {gib(info.memory_bytes):6.2f} GiB  "
            f"{info.uses:5d}  {info.key}"
        )


def command_status(magics: MagicsHost, names: list[str]) -> None:
    if not magics.session.runtime_started:
        print("Runtime: not started (it starts with the first %%mlx cell or %mlx load)")
        print(disk_status_line(magics))
        return
    status = magics.session.runtime.status()
    state = "running" if status.running else "stopped"
    busy = f"generating with {status.current}" if status.busy else "idle"
    print(
        f"Runtime: {status.kind}, {state}, {busy}; {status.queued} queued; "
        f"{status.generations} generations"
    )
    if magics.runtime != "remote":  # the lock and MLX's memory are this machine's
        print(f"GPU lock: {'held' if status.lock_held else 'free'}")
        used = sum(info.memory_bytes for info in status.models)
        print(
            f"Warm models: {len(status.models)} using {gib(used):.2f} GiB of a "
            f"{gib(status.memory_budget_bytes):.1f} GiB budget"
        )
        print(
            f"MLX memory: active {gib(status.active_memory_bytes):.2f} GiB, cache "
            f"{gib(status.cache_memory_bytes):.2f} GiB, "
            f"peak {gib(status.peak_memory_bytes):.2f} GiB"
        )
    decoded = magics.session.image_cache.stats()
    print(
        f"Decoded images: {decoded['entries']} cached, {decoded['hits']} hits, "
        f"{decoded['misses']} misses"
    )
    for info in status.models:
        if info.prefix_cache is not None:
            cache = info.prefix_cache
            rate = cache["hits"] / cache["lookups"] if cache["lookups"] else 0.0
            share = (
                cache["reused_tokens"] / cache["prompt_tokens"] if cache["prompt_tokens"] else 0.0
            )
            print(
                f"Prefix cache of {info.name}: {cache['entries']} entries, "
                f"{gib(cache['bytes']):.3f} GiB, hit rate {rate:.0%} "
                f"({cache['hits']}/{cache['lookups']}), {share:.0%} of prompt tokens reused, "
                f"{cache.get('disk_hits', 0)} read from disk"
            )
        if info.vision_features is not None:
            features = info.vision_features
            print(
                f"Vision features of {info.name}: {features['entries']} cached, "
                f"{features['hits']} hits, {features['misses']} misses"
            )
    if magics.runtime != "remote":
        print(disk_status_line(magics))


def command_memory(magics: MagicsHost, names: list[str]) -> None:
    if names:
        raise UserError("Usage: %mlx memory (no arguments)")
    if magics.runtime == "remote":
        raise UserError(
            "%mlx memory shows this machine's MLX memory; the remote runtime's models live in "
            "the servers' (see their own tools), or %mlx disconnect to use local models"
        )
    if not magics.session.runtime_started:
        print("Runtime: not started (it starts with the first %%mlx cell or %mlx load)")
        return
    from mlx_magic.display.memory_view import show_memory

    shell = magics.session.shell
    show_memory(
        magics.session.runtime.status(), notebook=getattr(shell, "kernel", None) is not None
    )


def command_chat(magics: MagicsHost, names: list[str]) -> None:
    conversations = magics.session.conversations
    action = names[0] if names else None
    if action == "reset":
        target = names[1] if len(names) > 1 else DEFAULT_CONVERSATION
        removed = conversations.reset(None if target == "all" else target)
        print(
            f"Forgot {len(removed)} conversation(s)"
            + (f": {', '.join(removed)}" if removed else "")
        )
    elif action == "save":
        if len(names) < 2:
            raise UserError("Usage: %mlx chat save FILE [NAME]")
        name = names[2] if len(names) > 2 else DEFAULT_CONVERSATION
        if name not in conversations:
            raise UserError(f"No conversation named '{name}'")
        destination = Path(names[1]).expanduser()
        if destination.is_dir():
            raise UserError(
                f"{names[1]} is a folder: name a file, e.g. {destination / (name + '.json')}"
            )
        try:
            path = conversations.save(name, destination)
        except OSError as error:
            raise UserError(
                f"Could not save to {names[1]}: {error.strerror or error} (does its folder exist?)"
            ) from error
        print(f"Saved conversation '{name}' to {path}")
    elif action == "load":
        if len(names) != 2:
            raise UserError("Usage: %mlx chat load FILE")
        try:
            conversation = conversations.load(Path(names[1]).expanduser())
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"Could not load a conversation from {names[1]}: {error}") from error
        print(f"Loaded conversation '{conversation.name}' ({len(conversation.turns)} turns)")
    else:
        name = action or DEFAULT_CONVERSATION
        conversation = conversations.get(name)
        if conversation is None:
            known = ", ".join(conversations.names()) or "none yet"
            raise UserError(
                f"No conversation named '{name}' (conversations: {known}); "
                "start one with %%mlx --chat NAME"
            )
        _show(magics, conversation.markdown(), {"text/markdown": conversation.markdown()})


def command_stats(magics: MagicsHost, names: list[str]) -> None:
    rows = magics.session.rows
    if not rows:
        print("No generations yet in this session.")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(_cell(row[c])) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_cell(row[c]).ljust(widths[c]) for c in columns) for row in rows]
    tokens = sum(row["tokens"] for row in rows)
    cached = sum(row["cached"] for row in rows)
    prompt = sum(row["prompt"] for row in rows)
    total = (
        f"{len(rows)} generations, {tokens} tokens generated, {prompt} prompt tokens "
        f"({cached} from the prefix cache)"
    )
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row[c]))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    _show(
        magics,
        "\n".join(lines + ["", total]),
        {
            "text/html": f"<table><thead><tr>{head}</tr></thead><tbody>{table}</tbody></table>"
            f"<p>{html.escape(total)}</p>",
        },
    )


def _show(magics: MagicsHost, text: str, rich: dict) -> None:
    """Rich output in a notebook, plain text in a terminal."""
    from IPython.display import display

    if getattr(magics.shell, "kernel", None) is None:
        print(text)
    else:
        display({"text/plain": text, **rich}, raw=True)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def command_jobs(magics: MagicsHost, names: list[str]) -> None:
    entries = magics.session.jobs.all()
    if not entries:
        print("No background jobs. Add -b to %%mlx or %%mlx_vision to start one.")
        return
    now = time.monotonic()
    print(f"{'id':>3}  {'state':<10}  {'model':<16}  {'tokens':>6}  age")
    for entry in entries:
        tokens = "" if entry.tokens is None else str(entry.tokens)
        print(
            f"{entry.id:>3}  {entry.state:<10}  {entry.model:<16}  {tokens:>6}  "
            f"{now - entry.submitted:.0f} s"
        )


def command_cancel(magics: MagicsHost, names: list[str]) -> None:
    entries = _select_jobs(magics, names)
    running = [entry for entry in entries if not entry.done.is_set()]
    for entry in running:
        entry.job.cancel()
    print(
        f"Cancelling {len(running)} job(s)"
        + (f": {', '.join(str(entry.id) for entry in running)}" if running else "")
    )


def command_wait(magics: MagicsHost, names: list[str]) -> None:
    entries = _select_jobs(magics, names)
    try:
        for entry in entries:
            # Short waits keep the kernel's interrupt responsive.
            while not entry.done.wait(0.1):
                pass
    except KeyboardInterrupt as interrupt:
        # One line, as for a stopped generation: the jobs themselves go on.
        raise GenerationInterrupted(
            "stopped waiting; the jobs go on (%mlx jobs lists them, %mlx cancel stops them)"
        ) from interrupt
    for entry in entries:
        # An answer's footer, or a --map run's summary.
        summary = getattr(entry.result, "footer", None) or getattr(entry.result, "summary", "")
        detail = entry.error or (summary if entry.result is not None else "")
        print(f"job {entry.id}: {entry.state}" + (f" · {detail}" if detail else ""))


def _select_jobs(magics: MagicsHost, names: list[str]) -> list[BackgroundJob]:
    try:
        return magics.session.jobs.select(names)
    except KeyError as missing:
        raise UserError(f"No background job {missing.args[0]}: %mlx jobs lists them") from missing


def command_panel(magics: MagicsHost, names: list[str]) -> None:
    from IPython.display import display

    from mlx_magic.magics.panel import ChatPanel

    if names not in ([], ["vision"]):
        raise UserError("Usage: %mlx panel [vision]")
    try:
        importlib.import_module("ipywidgets")
    except ImportError as error:
        raise UserError("The panel is made of ipywidgets: pip install ipywidgets") from error
    panel = ChatPanel(magics.session, vision=names == ["vision"])
    magics.session.panels.append(panel)
    display(panel.widget)


def command_runtime(magics: MagicsHost, names: list[str]) -> None:
    if names:
        if names[0] not in ("thread", "process") or len(names) > 1:
            raise UserError("Usage: %mlx runtime [thread|process]  (remote: %mlx connect URL)")
        magics.runtime = names[0]
    status = magics.session.runtime.status() if magics.session.runtime_started else None
    where = status.kind if status else "not started yet"
    print(f"Runtime: {magics.runtime} ({where})")


def command_restart(magics: MagicsHost, names: list[str]) -> None:
    backend = magics.session.runtime
    if not hasattr(backend, "restart"):
        raise UserError(
            "%mlx restart restarts the worker process: switch with %mlx runtime process first"
        )
    pid = backend.restart()
    print(f"Restarted the worker process (pid {pid}); models load again on first use")


def command_connect(magics: MagicsHost, names: list[str]) -> None:
    from mlx_magic.runtime.remote import parse_url

    if not names:
        raise UserError("Usage: %mlx connect URL [URL ...]  (e.g. http://127.0.0.1:8080)")
    for url in names:
        try:
            parse_url(url)
        except ValueError as error:
            raise UserError(str(error)) from error
    # Probed before anything changes: a URL that does not answer must not
    # drop the warm local models.
    from mlx_magic.runtime.remote import RemoteRuntime

    probe = RemoteRuntime(
        list(names), api_key_env=magics.api_key_env, connect_timeout_s=magics.connect_timeout_s
    )
    try:
        served = probe.probe()
    except ModelLoadError as error:
        raise UserError(
            f"{error}; still on the {magics.runtime} runtime (check the URL, or start the server)"
        ) from error
    finally:
        probe.stop()
    if magics.runtime != "remote":
        magics.session.local_runtime = magics.runtime
    magics.endpoints = list(names)
    magics.runtime = "remote"
    # runtime "remote" makes the session's runtime a RemoteRuntime
    backend = cast(RemoteRuntime, magics.session.runtime)
    print(f"Generations go to {', '.join(backend.urls)}")
    print("Served models: " + (", ".join(served) if served else "(none listed)"))


def command_disconnect(magics: MagicsHost, names: list[str]) -> None:
    if magics.runtime != "remote":
        print("Not connected: models already run locally")
        return
    magics.runtime = magics.session.local_runtime
    print(f"Back to local models (runtime {magics.runtime})")


def command_bench(magics: MagicsHost, names: list[str]) -> None:
    """%mlx bench [quick] [SCENARIO ...]: name the command that runs the benchmark.

    The benchmark is not part of the package: it runs from a clone of the
    repository (``benchmarks/``), so this only says how.
    """
    command = "python -m benchmarks"
    if "quick" in names:
        command += " --quick"
    scenarios = [name for name in names if name != "quick"]
    if scenarios:
        command += " --scenarios " + ",".join(scenarios)
    raise UserError(
        f"The benchmark runs from a clone of the repository: at its root, run {command}"
    )


command_map = command_plot  # %mlx map TABLE: another name for %mlx plot

#: The ``%mlx`` subcommands, in the order ``%mlx?`` lists them.
COMMANDS = {
    "load": command_load,
    "unload": command_unload,
    "models": command_models,
    "pull": command_pull,
    "rm": command_rm,
    "status": command_status,
    "memory": command_memory,
    "cache": command_cache,
    "chat": command_chat,
    "stats": command_stats,
    "jobs": command_jobs,
    "cancel": command_cancel,
    "wait": command_wait,
    "panel": command_panel,
    "runtime": command_runtime,
    "restart": command_restart,
    "connect": command_connect,
    "disconnect": command_disconnect,
    "bench": command_bench,
    "replay": command_replay,
    "branch": command_branch,
    "lens": command_lens,
    "attention": command_attention,
    "marks": command_marks,
    "segment": command_segment,
    "embed": command_embed,
    "nearest": command_nearest,
    "plot": command_plot,
    "map": command_map,
    "tools": command_tools,
}
