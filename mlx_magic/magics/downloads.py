"""``%mlx pull``, ``%mlx models --local`` and ``%mlx rm``: the Hub models on disk.

``%mlx pull`` downloads as a cell's first use does (:mod:`.hub_fetch`: the
plan, the disk check, a bar, an interruptible wait, a resume), without
loading; ``%mlx pull -b`` is a background job (``%mlx jobs``, ``%mlx
cancel``, ``%mlx wait``). The listing and the deletion are
:mod:`mlx_magic.models.on_disk`'s.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from mlx_magic.errors import DownloadStopped, UserError
from mlx_magic.magics.hub_fetch import show_plan, start, wait
from mlx_magic.models.downloads import HubPlan, check_disk, fetch, hub_plan
from mlx_magic.units import human_bytes

if TYPE_CHECKING:
    from mlx_magic.display.downloads import DownloadBar
    from mlx_magic.magics.session import MagicsHost


@dataclass
class PullResult:
    """What a background ``%mlx pull`` ended with (``%mlx wait`` shows the summary)."""

    summary: str
    finish_reason: str  # "done" or "cancelled"
    path: Optional[str] = None


def hub_id(magics: MagicsHost, names: list[str], usage: str) -> str:
    """The one Hub id a command names (an alias is followed)."""
    from mlx_magic.models.resolve import follow_aliases, is_hub_id

    if len(names) != 1:
        raise UserError(f"Usage: {usage}")
    name = follow_aliases(names[0], magics.session.settings.aliases)
    if not is_hub_id(name):
        raise UserError(
            f"'{names[0]}' is not a Hugging Face Hub id (owner/name): {' '.join(usage.split()[:2])} "
            "works on the Hub's models"
        )
    return name


def command_pull(magics: MagicsHost, names: list[str], background: bool = False) -> None:
    """``%mlx pull [-b] NAME``: download a Hub model without loading it."""
    session = magics.session
    repo_id = hub_id(magics, names, "%mlx pull [-b] owner/name")
    plan = hub_plan(repo_id)
    if plan is None or plan.complete:
        path = fetch(repo_id, plan)
        print(f"{repo_id} is here: {path}")
        return
    check_disk(plan)
    bar = show_plan(plan, notebook=getattr(magics.shell, "kernel", None) is not None)
    if not background:
        started = time.monotonic()
        path = wait(plan, bar, start(plan, bar))
        print(_pulled(plan, bar, started, path))
        return
    from mlx_magic.magics.background import MapRunHandle

    handle = MapRunHandle()  # what %mlx cancel sets: the download's stop
    run = _background_pull(plan, bar, handle.stop)
    entry = session.jobs.start_run(handle, f"pull {repo_id}", run)
    print(f"Pulling in the background as job {entry.id} (%mlx jobs, %mlx wait, %mlx cancel)")


def _background_pull(
    plan: HubPlan, bar: DownloadBar, stop: threading.Event
) -> Callable[[], PullResult]:
    def run() -> PullResult:
        started = time.monotonic()
        download = start(plan, bar, stop)
        download.done.wait()
        if isinstance(download.error, DownloadStopped):
            return PullResult(
                f"stopped at {human_bytes(bar.done)} of {human_bytes(plan.total_bytes)}; "
                "%mlx pull again resumes",
                "cancelled",
            )
        if download.error is not None:
            raise download.error
        assert download.path is not None
        return PullResult(_pulled(plan, bar, started, download.path), "done", str(download.path))

    return run


def _pulled(plan: HubPlan, bar: DownloadBar, started: float, path: Path) -> str:
    took = max(time.monotonic() - started, 1e-6)
    return (
        f"Pulled {plan.repo_id}: {human_bytes(bar.received)} in {took:.1f} s "
        f"({human_bytes(bar.received / took)}/s) into {path}"
    )


def command_local_models(magics: MagicsHost, names: list[str]) -> None:
    """``%mlx models --local``: the models on disk (Hub cache and converted GGUF files)."""
    from mlx_magic.display.downloads import local_models_table
    from mlx_magic.models.embedded import cache_root
    from mlx_magic.models.on_disk import local_models

    if names:
        raise UserError("Usage: %mlx models --local (no names)")
    models = local_models(cache_root() / "gguf")
    if not models:
        print("No models on disk yet: %mlx pull owner/name downloads one from the Hub")
        return
    text, table = local_models_table(models)
    _show(magics, text, {"text/html": table})


def command_rm(magics: MagicsHost, names: list[str], yes: bool = False) -> None:
    """``%mlx rm [-y] NAME``: delete a Hub model from the cache, asking first."""
    from IPython.core.error import StdinNotImplementedError

    from mlx_magic.models.on_disk import removal

    repo_id = hub_id(magics, names, "%mlx rm [-y] owner/name")
    planned = removal(repo_id)
    if not yes:
        question = (
            f"Delete {repo_id} ({human_bytes(planned.size)}) from the Hugging Face cache? [y/N] "
        )
        try:
            answer = input(question)
        except (StdinNotImplementedError, EOFError) as error:
            raise UserError(
                f"%mlx rm asks before deleting and this frontend cannot answer: "
                f"%mlx rm -y {names[0]} deletes without asking"
            ) from error
        if answer.strip().lower() not in ("y", "yes"):
            print(f"Kept {repo_id}")
            return
    planned.run()
    print(f"Deleted {repo_id}: {human_bytes(planned.size)} freed")


def _show(magics: MagicsHost, text: str, rich: dict[str, Any]) -> None:
    """Rich output in a notebook, plain text in a terminal."""
    from IPython.display import display

    if getattr(magics.shell, "kernel", None) is None:
        print(text)
    else:
        display({"text/plain": text, **rich}, raw=True)
