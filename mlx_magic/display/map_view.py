"""How a ``--map`` run shows itself: tqdm's progress bar and the last few rows.

In a notebook tqdm draws its widget bar (items done, ETA, and a postfix of
tokens per second and failures); in a terminal, its text bar. The last rows
are one HTML output updated in place, at most every :data:`ROWS_EVERY_S`.
"""

from __future__ import annotations

import time
from typing import Optional

from mlx_magic.display.map_result import rows_html

#: Least time between two updates of the live rows.
ROWS_EVERY_S = 1.0
#: How many of the latest rows are shown while the run goes on.
LIVE_ROWS = 5


class MapProgress:
    """The progress bar and live rows of one ``--map`` run."""

    def __init__(self, total: int, *, notebook: bool, description: str):
        from tqdm.auto import tqdm

        self.notebook = notebook
        self.bar = tqdm(total=total, desc=description, unit="item", leave=True)
        self.started = time.perf_counter()
        self.tokens = 0
        self.failed = 0
        self._rows_handle = None
        self._rows_at = 0.0
        self._latest: list = []

    def item_done(self, row: dict, label: object) -> None:
        """One item has its row (an answer, or an error)."""
        self.tokens += int(row.get("tokens") or 0)
        if row.get("error"):
            self.failed += 1
        elapsed = max(1e-9, time.perf_counter() - self.started)
        postfix = {"tok/s": f"{self.tokens / elapsed:.1f}"}
        if self.failed:
            postfix["failed"] = str(self.failed)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)
        self._latest = (self._latest + [(label, row)])[-LIVE_ROWS:]
        self._show_rows()

    def _show_rows(self, force: bool = False) -> None:
        if not self.notebook:
            return
        now = time.perf_counter()
        if not force and now - self._rows_at < ROWS_EVERY_S:
            return
        self._rows_at = now
        from IPython.display import display

        bundle = {
            "text/html": rows_html(
                [row for _, row in self._latest], [label for label, _ in self._latest]
            ),
            "text/plain": f"[last {len(self._latest)} rows]",
        }
        if self._rows_handle is None:
            self._rows_handle = display(bundle, raw=True, display_id=True)
        else:
            self._rows_handle.update(bundle, raw=True)

    def close(self, summary: Optional[str] = None) -> None:
        """The run ended: the bar stays at its last count; the live rows give
        way to the summary line."""
        self.bar.close()
        if self._rows_handle is not None:
            self._rows_handle.update({"text/plain": ""}, raw=True)
        if summary:
            if self.notebook:
                from IPython.display import display

                from mlx_magic.display.result import footer_html

                display({"text/plain": f"[{summary}]", "text/html": footer_html(summary)}, raw=True)
            else:
                print(f"[{summary}]", flush=True)
