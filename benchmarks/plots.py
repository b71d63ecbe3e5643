"""The plots of the results (PNG, with matplotlib): one per scenario that has one."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchmarks.metrics import ScenarioResult


def plot(results: Sequence[ScenarioResult], folder) -> list[Path]:
    """Draw the plots of the results that have data for one into ``folder`` (PNG).

    Returns the files written: ``conversation.png`` (TTFT per turn, with and
    without reuse), ``traffic.png`` (bytes sent against tokens generated),
    ``prefix.png`` (TTFT per question), ``overhead.png``, ``warm_vs_cold.png``,
    ``repeat_image.png`` and ``responsiveness.png``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        draw = _PLOTTERS.get(result.name)
        if draw is None or not (result.series or result.metrics):
            continue
        figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
        try:
            try:
                drawn = draw(axes, result)
            except (KeyError, TypeError, ValueError):
                # A profile's run (benchmarks.gpu) keeps its series in
                # another shape (per document size, say): no plot for it.
                drawn = False
            if drawn is False:
                continue
            axes.grid(True, alpha=0.3)
            figure.tight_layout()
            path = folder / f"{result.name}.png"
            figure.savefig(path)
            written.append(path)
        finally:
            plt.close(figure)
    return written


def _plot_conversation(axes, result) -> bool:
    series = result.series
    if not series.get("reuse_ttft"):
        return False
    turns = list(range(1, len(series["reuse_ttft"]) + 1))
    axes.plot(
        turns,
        series["rebuild_ttft"],
        "o-",
        color="tab:red",
        label="whole history each turn (prefix cache off)",
    )
    axes.plot(
        turns, series["reuse_ttft"], "o-", color="tab:green", label="--chat with the prefix cache"
    )
    axes.set_xlabel("turn")
    axes.set_ylabel("time to first token (s)")
    axes.set_title(f"Conversation: TTFT per turn ({series.get('model', '')})")
    axes.legend()
    _integer_ticks(axes)
    return True


def _plot_traffic(axes, result) -> bool:
    series = result.series
    if not series.get("tokens"):
        return False
    tokens = series["tokens"]
    axes.plot(tokens, series["bytes"], "o-", label="IOPub bytes, %%mlx (foreground)")
    axes.plot(tokens, series["text_bytes"], "s--", label="answer text itself")
    axes.plot(
        tokens, series["limit"], ":", color="grey", label="target: 3 × text + 512 B per update"
    )
    if series.get("background_tokens"):
        axes.plot(
            series["background_tokens"],
            series["background_bytes"],
            "^-",
            color="tab:purple",
            label="IOPub bytes, %%mlx -b (widgets)",
        )
    axes.set_xlabel("tokens generated")
    axes.set_ylabel("bytes sent to the frontend")
    axes.set_title("Traffic per generation (tiny llama, --raw)")
    axes.legend()
    return True


def _plot_prefix(axes, result) -> bool:
    series = result.series
    if not series.get("cached_ttft"):
        return False
    cached = series["cached_ttft"]
    axes.plot(
        range(1, len(cached) + 1), cached, "o-", color="tab:green", label="%%mlx, prefix cache on"
    )
    uncached = series.get("uncached_ttft", [])
    axes.plot(
        range(1, len(uncached) + 1),
        uncached,
        "s-",
        color="tab:red",
        label="%%mlx, prefix cache off",
    )
    cold = series.get("cold_ttft", [])
    if cold:
        axes.plot(
            range(1, len(cold) + 1),
            cold,
            "^",
            color="black",
            markersize=9,
            label="fresh mlx_lm.generate process",
        )
    axes.set_yscale("log")
    axes.set_xlabel("question (same system prompt and paragraph)")
    axes.set_ylabel("time to first token (s, log)")
    axes.set_title(
        f"Prefix cache: {series.get('prompt_tokens', '?')}-token prompts "
        f"({series.get('model', '')})"
    )
    axes.legend()
    _integer_ticks(axes)
    return True


def _plot_bars(axes, result, title, unit_label) -> bool:
    rows = [m for m in result.metrics if m.baseline and m.ours]
    if not rows:
        return False
    positions = range(len(rows))
    width = 0.38
    axes.bar(
        [p - width / 2 for p in positions],
        [m.baseline_median for m in rows],
        width,
        label="baseline",
        color="tab:grey",
    )
    axes.bar(
        [p + width / 2 for p in positions],
        [m.ours_median for m in rows],
        width,
        label="mlx_magic",
        color="tab:blue",
    )
    axes.set_xticks(list(positions))
    axes.set_xticklabels([_wrap(m.name) for m in rows], fontsize=7)
    axes.set_ylabel(unit_label)
    axes.set_title(title)
    axes.legend()
    return True


def _plot_overhead(axes, result) -> bool:
    series = result.series
    if not series.get("models"):
        return False
    models = series["models"]
    positions = range(len(models))
    width = 0.38
    axes.bar(
        [p - width / 2 for p in positions],
        series["baseline_tps"],
        width,
        color="tab:grey",
        label="mlx_lm.stream_generate (in process)",
    )
    axes.bar(
        [p + width / 2 for p in positions],
        series["ours_tps"],
        width,
        color="tab:blue",
        label="%%mlx in a kernel",
    )
    axes.set_xticks(list(positions))
    axes.set_xticklabels(models)
    axes.set_yscale("log")
    axes.set_ylabel("decode tokens/s (median, log)")
    axes.set_title("Decode speed: raw mlx-lm vs %%mlx")
    axes.legend()
    return True


def _plot_warm_vs_cold(axes, result) -> bool:
    ok = _plot_bars(
        axes, result, "Time to first token: fresh process vs warm cell", "seconds (median, log)"
    )
    if ok:
        axes.set_yscale("log")
    return ok


def _plot_repeat_image(axes, result) -> bool:
    series = result.series
    if not series.get("first"):
        return False
    reps = range(1, len(series["first"]) + 1)
    axes.plot(reps, series["first"], "o-", label="first question on a new image")
    axes.plot(reps, series["second"], "o-", label="second question, same image")
    if series.get("raw"):
        axes.plot(
            range(1, len(series["raw"]) + 1),
            series["raw"],
            "x:",
            color="grey",
            label="raw mlx_vlm.stream_generate (in process)",
        )
    axes.set_ylim(bottom=0)
    axes.set_xlabel("repetition (a fresh image each)")
    axes.set_ylabel("time to first token (s)")
    axes.set_title("Repeat image (tiny Qwen2-VL)")
    axes.legend()
    _integer_ticks(axes)
    return True


def _plot_responsiveness(axes, result) -> bool:
    series = result.series
    groups = [
        (key[: -len("_idle")], series[key], series.get(key[: -len("_idle")] + "_busy", []))
        for key in series
        if key.endswith("_idle")
    ]
    if not groups:
        return False
    data, labels = [], []
    for name, idle, busy in groups:
        data += [[v * 1000 for v in idle], [v * 1000 for v in busy]]
        labels += [f"{name}\nidle", f"{name}\n-b streaming"]
    axes.boxplot(data, showfliers=True)
    axes.set_xticks(range(1, len(labels) + 1))
    axes.set_xticklabels(labels, fontsize=8)
    axes.axhline(100, color="tab:red", linestyle=":", label="target 100 ms")
    axes.set_ylabel("`1+1` round trip (ms)")
    axes.set_title("Kernel responsiveness while a background job streams")
    axes.legend()
    return True


def _integer_ticks(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _wrap(text: str, width: int = 22) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


_PLOTTERS = {
    "conversation": _plot_conversation,
    "traffic": _plot_traffic,
    "prefix": _plot_prefix,
    "overhead": _plot_overhead,
    "warm_vs_cold": _plot_warm_vs_cold,
    "repeat_image": _plot_repeat_image,
    "responsiveness": _plot_responsiveness,
}
