"""Downloads in the cell: what will come, a progress bar, and the models on disk.

The plan is a few lines (files and sizes, where they go, what is already
here). The bar is tqdm's: in a notebook its ipywidgets bar
(``tqdm.notebook``), in a terminal its text bar; either shows the bytes, the
rate and the time left, and a bar stopped before its end turns red. It hears
the bytes from huggingface_hub's download threads, so its updates take a lock.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

from mlx_magic.models.downloads import HubPlan
from mlx_magic.models.on_disk import LocalModel
from mlx_magic.units import human_bytes

#: Files listed one per line before the rest are counted.
_LISTED = 6


def plan_lines(plan: HubPlan) -> list[str]:
    """What fetching ``plan`` brings: the total, the largest files, where to."""
    head = (
        f"Downloading {plan.repo_id} from the Hugging Face Hub: {len(plan.files)} files, "
        f"{human_bytes(plan.total_bytes)}"
    )
    if plan.on_disk_bytes:
        head += f" ({human_bytes(plan.on_disk_bytes)} already here: resuming)"
    lines = [head + f", into {plan.cache_dir}"]
    largest = sorted(plan.files, key=lambda f: f.size, reverse=True)
    shown = largest if len(largest) <= _LISTED + 1 else largest[:_LISTED]
    for file in shown:
        here = " (here)" if file.on_disk >= file.size else ""
        lines.append(f"  {file.name:<40} {human_bytes(file.size):>10}{here}")
    if len(shown) < len(largest):
        rest = largest[len(shown) :]
        lines.append(f"  … and {len(rest)} more files, {human_bytes(sum(f.size for f in rest))}")
    return lines


class DownloadBar:
    """tqdm's bar over the plan's bytes, starting at those already here."""

    def __init__(self, plan: HubPlan, *, notebook: bool) -> None:
        if notebook:
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.received = 0
        self._bar: Any = tqdm(
            total=plan.total_bytes,
            initial=plan.on_disk_bytes,
            desc=plan.repo_id,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
        )

    def add(self, n_bytes: int) -> None:
        """``n_bytes`` more received (from any thread)."""
        with self._lock:
            self.received += n_bytes
            self._bar.update(n_bytes)

    @property
    def done(self) -> int:
        """Bytes of the plan on disk, those there before included."""
        return int(self._bar.n)

    @property
    def rate(self) -> float:
        """The rate the bar shows, in bytes per second (0 before it knows)."""
        return float(self._bar.format_dict.get("rate") or 0.0)

    def close(self) -> None:
        with self._lock:
            self._bar.close()


def ago(timestamp: float) -> str:
    """How long ago ``timestamp`` was, roughly: ``just now``, ``5 min ago``, ``3 days ago``."""
    seconds = max(time.time() - timestamp, 0.0)
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def local_models_table(models: list[LocalModel]) -> tuple[str, str]:
    """``%mlx models --local``: the models on disk as text and as an HTML table."""
    columns = ("model", "kind", "quantization", "size", "last used", "from")
    rows = [
        (
            model.name,
            model.kind,
            model.quantization or "-",
            human_bytes(model.size),
            ago(model.last_used) if model.last_used else "-",
            {"hub": "Hub", "partial": "Hub (partial: pull resumes)"}.get(model.source, "GGUF"),
        )
        for model in models
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    plural = "s" if len(models) != 1 else ""
    total = f"{len(models)} model{plural}, {human_bytes(sum(m.size for m in models))} on disk"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    table = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>{html.escape(total)}</p>"
    )
    return "\n".join(lines + ["", total]), table
