"""``%mlx memory``: what the session's generations and warm models cost in memory.

Two views of one :class:`~mlx_magic.vocabulary.values.RuntimeStatus`:

* across the generations (oldest first): MLX's active, cache and peak memory
  right after each, and the size of each answer's KV cache beside its
  context length, so that a class sees a longer context cost more;
* per warm model: its weights, the KV cache of its latest answer and its
  prefix cache (the prompts kept for reuse).

In a notebook a matplotlib figure (when matplotlib is installed) and tables
(pandas DataFrames when pandas is installed); in a terminal, text tables.
"""

from __future__ import annotations

from typing import Any

from mlx_magic.units import gib
from mlx_magic.vocabulary.values import RuntimeStatus

MIB = 1024**2


def generation_rows(status: RuntimeStatus) -> list[dict]:
    """One row per remembered generation (memory in GiB, the KV cache in MiB)."""
    return [
        {
            "generation": sample.generation,
            "model": sample.model,
            "active_gib": round(gib(sample.active_bytes), 3),
            "cache_gib": round(gib(sample.cache_bytes), 3),
            "peak_gib": round(gib(sample.peak_bytes), 3),
            "context_tokens": sample.context_tokens,
            "kv_cache_mib": round(sample.kv_cache_bytes / MIB, 2)
            if sample.kv_cache_bytes
            else None,
        }
        for sample in status.memory_log
    ]


def model_rows(status: RuntimeStatus) -> list[dict]:
    """One row per warm model: weights, its latest answer's KV cache, its prefix cache."""
    latest_kv: dict[str, int] = {}
    for sample in status.memory_log:
        if sample.kv_cache_bytes:
            latest_kv[sample.model] = sample.kv_cache_bytes
    rows = []
    for info in status.models:
        prefix = (info.prefix_cache or {}).get("bytes", 0)
        rows.append(
            {
                "model": info.name,
                "kind": info.kind,
                "weights_mib": round(info.memory_bytes / MIB, 2),
                "last_kv_cache_mib": round(latest_kv.get(info.name, 0) / MIB, 2),
                "prefix_cache_mib": round(prefix / MIB, 2),
                "prefix_cache_entries": (info.prefix_cache or {}).get("entries", 0),
            }
        )
    return rows


def summary_line(status: RuntimeStatus) -> str:
    return (
        f"MLX memory now: active {gib(status.active_memory_bytes):.2f} GiB, cache "
        f"{gib(status.cache_memory_bytes):.2f} GiB, peak {gib(status.peak_memory_bytes):.2f} GiB; "
        f"{len(status.models)} warm model(s) of a {gib(status.memory_budget_bytes):.1f} GiB budget; "
        f"{len(status.memory_log)} generation(s) remembered"
    )


def memory_figure(status: RuntimeStatus) -> Any:
    """The two views as one matplotlib figure (``None`` without matplotlib or data)."""
    try:
        # A Figure of its own, not pyplot's: the user's backend and figures stay as they are.
        from matplotlib.figure import Figure
    except ImportError:
        return None
    rows = generation_rows(status)
    models = model_rows(status)
    if not rows and not models:
        return None
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    over_time, per_model = figure.subplots(1, 2, width_ratios=[3, 2])
    steps = [row["generation"] for row in rows]
    for key, label in (("active_gib", "active"), ("cache_gib", "cache"), ("peak_gib", "peak")):
        over_time.plot(steps, [row[key] for row in rows], marker="o", label=label)
    over_time.set_xlabel("generation")
    over_time.set_ylabel("GiB")
    over_time.set_title("MLX memory after each generation")
    over_time.legend(loc="upper left")
    kv = [(row["generation"], row["kv_cache_mib"]) for row in rows if row["kv_cache_mib"]]
    if kv:
        kv_axis = over_time.twinx()
        kv_axis.bar([g for g, _ in kv], [m for _, m in kv], alpha=0.25, color="grey")
        kv_axis.set_ylabel("KV cache of the answer (MiB)")
    names = [row["model"] for row in models]
    bottom = [0.0] * len(models)
    for key, label in (
        ("weights_mib", "weights"),
        ("last_kv_cache_mib", "KV cache (latest answer)"),
        ("prefix_cache_mib", "prefix cache"),
    ):
        values = [row[key] for row in models]
        per_model.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    per_model.set_ylabel("MiB")
    per_model.set_title("Warm models")
    if models:
        per_model.legend(loc="upper left", fontsize="small")
    return figure


def table(rows: list[dict]) -> Any:
    """A pandas DataFrame where pandas is installed, else the rows as text."""
    try:
        import pandas as pd
    except ImportError:
        return text_table(rows)
    return pd.DataFrame(rows)


def text_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[("—" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def show_memory(status: RuntimeStatus, notebook: bool) -> None:
    """Print (a terminal) or display (a notebook) both views."""
    print(summary_line(status))
    if not notebook:
        print("Generations:\n" + text_table(generation_rows(status)))
        print("Warm models:\n" + text_table(model_rows(status)))
        return
    import io

    from IPython.display import Image, display

    figure = memory_figure(status)
    if figure is not None:
        # As a PNG of its own: a Figure displays as a picture only where the
        # inline backend registered its formatter (after importing pyplot).
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=96)
        display(Image(data=png.getvalue(), format="png"))
    display(table(model_rows(status)))
    display(table(generation_rows(status)))
