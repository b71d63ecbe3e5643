"""A Hub model's first use in a cell: the plan and a bar shown, the fetch on a
helper thread while the kernel thread waits in short steps.

An interrupt stops the waiting at once with one line and tells the download
to stop at its next chunk; what was written stays, and the next run resumes
it. The plan and the fetch are :mod:`mlx_magic.models.downloads`'; the plan's
lines and the bar, :mod:`mlx_magic.display.downloads`'. The commands built on
it (``%mlx pull``, ``%mlx models --local``, ``%mlx rm``) are in :mod:`.downloads`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from mlx_magic.errors import GenerationInterrupted
from mlx_magic.models.downloads import HubPlan, check_disk, fetch, hub_plan
from mlx_magic.units import human_bytes

if TYPE_CHECKING:
    from mlx_magic.display.downloads import DownloadBar


def fetch_in_cell(repo_id: str, *, notebook: bool) -> Path:
    """The folder of Hub model ``repo_id``, downloaded first if it is not
    here (the plan and a bar in the cell: a widget when ``notebook``); how
    the session's resolution fetches.

    Raises:
        ModelLoadError: the Hub refused, or no network and no complete copy.
        UserError: the disk cannot hold it.
        GenerationInterrupted: an interrupt stopped the download.
    """
    plan = hub_plan(repo_id)
    if plan is None or plan.complete:
        return fetch(repo_id, plan)
    check_disk(plan)
    bar = show_plan(plan, notebook=notebook)
    return wait(plan, bar, start(plan, bar))


def show_plan(plan: HubPlan, *, notebook: bool) -> DownloadBar:
    """The plan's lines, then its bar (started at the bytes already here)."""
    from mlx_magic.display.downloads import DownloadBar, plan_lines

    print("\n".join(plan_lines(plan)), flush=True)
    return DownloadBar(plan, notebook=notebook)


@dataclass
class Download:
    """A download on its helper thread: set ``stop`` to end it at its next
    chunk; ``done`` is set with its folder or its error."""

    stop: threading.Event
    done: threading.Event
    path: Optional[Path] = None
    error: Optional[BaseException] = None


def start(plan: HubPlan, bar: DownloadBar, stop: Optional[threading.Event] = None) -> Download:
    """Fetch ``plan`` on a helper thread (huggingface_hub's own threads under it)."""
    download = Download(stop=stop or threading.Event(), done=threading.Event())

    def run() -> None:
        try:
            download.path = fetch(plan.repo_id, plan, bar.add, download.stop)
        except BaseException as error:  # handed to the waiting thread
            download.error = error
        finally:
            bar.close()
            download.done.set()

    threading.Thread(target=run, name="mlx_magic-download", daemon=True).start()
    return download


def wait(plan: HubPlan, bar: DownloadBar, download: Download) -> Path:
    """Wait for ``download`` on the kernel thread; its folder.

    Raises:
        GenerationInterrupted: an interrupt came (one line; the download is
            told to stop, and what it wrote stays for the next run).
        ModelLoadError: the download failed (one line).
    """
    try:
        # Short waits keep the kernel's interrupt responsive.
        while not download.done.wait(0.1):
            pass
    except KeyboardInterrupt as interrupt:
        download.stop.set()
        raise GenerationInterrupted(
            f"stopped downloading {plan.repo_id} at {human_bytes(bar.done)} of "
            f"{human_bytes(plan.total_bytes)}; run it again to resume"
        ) from interrupt
    if download.error is not None:
        raise download.error
    assert download.path is not None
    return download.path
