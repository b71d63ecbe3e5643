"""Benchmarks: mlx_magic next to raw mlx-lm / mlx-vlm, measured side by side in one run.

Command line::

    python -m mlx_magic.bench [--quick] [--scenarios a,b,...] [--out BENCHMARKS.md]

Every scenario runs its baseline and the magic in the same run, repetition by
repetition, interleaved (baseline, ours, baseline, ours, ...), so a machine
that gets busier or quieter during the run affects both sides alike. The
magic always runs in a real Jupyter kernel (started with jupyter_client, as a
frontend would), its numbers read from ``_mlx.stats`` and from the kernel's
IOPub messages as the client receives them. Progress is printed as it goes;
at the end come a table (min and median of each side, the ratio, the target,
pass or miss), the plots (PNG) and the report (Markdown).

From Python (what ``%mlx bench`` calls)::

    from mlx_magic import bench
    results = bench.run(["overhead"], quick=True, progress=print)
    print(bench.table(results))
    bench.plot(results, "benchmarks")
    bench.write_report(results, "BENCHMARKS.md", plots=..., command=...)

``--quick`` runs one repetition with the tiny random models wherever the
scenario allows it (SmolLM2 only for its row of ``overhead``, a few tokens):
it checks that everything runs, its numbers are not the ones to quote.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

#: The scenarios, in the order they run.
SCENARIOS = (
    "overhead",
    "traffic",
    "warm_vs_cold",
    "conversation",
    "prefix",
    "repeat_image",
    "responsiveness",
    "runtimes",
)
#: Scenarios that live in a module of their own (the rest are in scenarios).
_SCENARIO_MODULES = {"runtimes": "runtimes"}

# How the ratio column compares the two sides.
RATIO = "ours/baseline"  # ours ÷ baseline (tokens/s, bytes, a turn against turn 1)
SPEEDUP = "baseline/ours"  # how many times faster ours is (times)
DIFFERENCE = "ours-baseline"  # what ours adds (times)


@dataclass
class Metric:
    """One row of the table: a measured quantity, both sides, the target.

    ``baseline`` and ``ours`` hold one sample per repetition (or per question,
    per ping: whatever the scenario repeats). ``passed`` is ``None`` for a
    row that is shown for information and has no target.
    """

    scenario: str
    name: str
    unit: str
    baseline: list
    ours: list
    baseline_label: str = ""
    ours_label: str = ""
    ratio_kind: str = RATIO
    target: str = ""
    passed: Optional[bool] = None

    @property
    def baseline_median(self) -> Optional[float]:
        return _median(self.baseline)

    @property
    def ours_median(self) -> Optional[float]:
        return _median(self.ours)

    @property
    def ratio(self) -> Optional[float]:
        """The comparison of the medians, as ``ratio_kind`` says."""
        base, ours = self.baseline_median, self.ours_median
        if base is None or ours is None:
            return None
        if self.ratio_kind == DIFFERENCE:
            return ours - base
        if self.ratio_kind == SPEEDUP:
            return base / ours if ours else None
        return ours / base if base else None

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "info"
        return "pass" if self.passed else "MISS"


@dataclass
class ScenarioResult:
    """What one scenario measured.

    Attributes:
        name: the scenario's name (one of :data:`SCENARIOS`).
        title: one line saying what was compared.
        metrics: the table rows.
        series: named lists of numbers for the plots (per turn, per question...).
        notes: measured evidence and explanations, one paragraph each.
        setup: how it was run (models, prompts, token counts, repetitions).
        error: the error that stopped the scenario, if one did.
        seconds: how long the scenario took.
        load: the 1-minute load average before and after the scenario.
        ran: when and with which command it ran (set by the command line).
    """

    name: str
    title: str = ""
    metrics: list = field(default_factory=list)
    series: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    setup: dict = field(default_factory=dict)
    error: Optional[str] = None
    seconds: float = 0.0
    load: tuple = ()
    ran: str = ""

    def metric(self, name: str) -> Optional[Metric]:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        return None


# --------------------------------------------------------------------------
# Running


def run(
    scenarios: Optional[Sequence[str]] = None,
    quick: bool = False,
    progress: Callable[[str], None] = print,
    *,
    work_dir=None,
) -> list[ScenarioResult]:
    """Run the scenarios (all by default) and return their results.

    Args:
        scenarios: names from :data:`SCENARIOS`; ``None`` runs them all.
        quick: one repetition, tiny models where possible, short prompts.
        progress: called with one line at every step, so a long run shows
            where it is.
        work_dir: where tiny models and images are built (default: under the
            mlx_magic cache folder, so that they are built once).

    A scenario that fails does not stop the others: its result carries the
    error and whatever it measured before.
    """
    from mlx_magic.bench.harness import Context

    names = list(SCENARIOS if scenarios is None else scenarios)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    context = Context.create(quick=quick, progress=progress, work_dir=work_dir)
    results = []
    started = time.perf_counter()
    for number, name in enumerate(names, 1):
        context.prefix = f"[{number}/{len(names)} {name}]"
        progress(f"{context.prefix} starting (load average {_load():.2f})")
        result = ScenarioResult(name=name, load=(_load(),))
        began = time.perf_counter()
        try:
            module = importlib.import_module(
                f".{_SCENARIO_MODULES.get(name, 'scenarios')}", __package__
            )
            getattr(module, name)(context, result)
        except Exception as error:  # reported, and the next scenario runs
            import traceback

            result.error = f"{type(error).__name__}: {error}"
            progress(f"{context.prefix} FAILED: {result.error}")
            progress(traceback.format_exc())
        result.seconds = time.perf_counter() - began
        result.load = (result.load[0], _load())
        results.append(result)
        verdicts = ", ".join(f"{m.verdict}" for m in result.metrics if m.passed is not None)
        progress(
            f"{context.prefix} done in {result.seconds:.0f} s"
            + (f" ({verdicts})" if verdicts else "")
            + f"; {time.perf_counter() - started:.0f} s so far"
        )
    return results


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _median(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _min(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return min(values) if values else None


# --------------------------------------------------------------------------
# The table


def format_value(value: Optional[float], unit: str) -> str:
    """A number with its unit, short: seconds below one as milliseconds."""
    if value is None:
        return "–"
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms" if abs(value) >= 0.01 else f"{value * 1000:.1f} ms"
        return f"{value:.2f} s"
    if unit == "B":
        if abs(value) >= 1e6:
            return f"{value / 1e6:.2f} MB"
        if abs(value) >= 1e4:
            return f"{value / 1e3:.1f} kB"
        return f"{value:.0f} B"
    if unit in ("msgs", "tokens"):
        return f"{value:.0f} {unit}"
    return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"


def _side(values: list, unit: str) -> str:
    if not values:
        return "–"
    low, mid = _min(values), _median(values)
    if len(values) == 1 or low == mid:
        return format_value(mid, unit)
    return f"{format_value(low, unit)} / {format_value(mid, unit)}"


def format_ratio(metric: Metric) -> str:
    ratio = metric.ratio
    if ratio is None:
        return "–"
    if metric.ratio_kind == DIFFERENCE:
        sign = "+" if ratio >= 0 else "−"
        return sign + format_value(abs(ratio), metric.unit)
    if metric.ratio_kind == SPEEDUP:
        return f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.1f}× slower"
    return f"{ratio:.3f}×" if 0.9 < ratio < 1.1 else f"{ratio:.2f}×"


def table(results: Sequence[ScenarioResult], markdown: bool = False) -> str:
    """The results as a table: scenario, metric, baseline and ours (min / median),
    ratio (of the medians), target, pass/MISS/info. Plain text, or Markdown."""
    header = [
        "scenario",
        "metric",
        "baseline (min / median)",
        "ours (min / median)",
        "ratio",
        "target",
        "result",
    ]
    rows = []
    for result in results:
        if result.error and not result.metrics:
            rows.append([result.name, "(failed)", result.error[:60], "", "", "", "ERROR"])
        for metric in result.metrics:
            base = _side(metric.baseline, metric.unit)
            ours = _side(metric.ours, metric.unit)
            if markdown and metric.baseline_label:
                base = f"{base}<br><sub>{metric.baseline_label}</sub>"
            if markdown and metric.ours_label:
                ours = f"{ours}<br><sub>{metric.ours_label}</sub>"
            rows.append(
                [
                    result.name,
                    metric.name,
                    base,
                    ours,
                    format_ratio(metric),
                    metric.target or "–",
                    metric.verdict,
                ]
            )
        if result.error and result.metrics:
            rows.append([result.name, "(stopped early)", result.error[:60], "", "", "", "ERROR"])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [c.replace("|", "\\|") for c in row]
            cells[-1] = f"**{cells[-1]}**" if cells[-1] in ("MISS", "ERROR") else cells[-1]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
        for i in range(len(header))
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------
# Plots


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
            if draw(axes, result) is False:
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


# --------------------------------------------------------------------------
# The report


def machine() -> dict:
    """CPU model, cores, memory, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        if sys.platform == "darwin":
            import subprocess

            try:
                cpu = subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    os_name = platform.platform()
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    os_name = (
                        f"{line.split('=', 1)[1].strip().strip(chr(34))} ({platform.platform()})"
                    )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 1024**3, 1) if memory else None,
        "os": os_name,
    }


def versions() -> dict:
    """Versions of Python and of the packages measured."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in ("mlx", "mlx-lm", "mlx-vlm", "mlx_magic", "ipykernel", "jupyter_client"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    try:
        import mlx.core as mx

        found["mlx device"] = str(mx.default_device())
    except Exception:  # noqa: BLE001 - informational only
        pass
    return found


def mlx_probe() -> dict:
    """How fast MLX multiplies matrices here: the shapes of one SmolLM2 layer's MLP.

    A prompt of 37 tokens through a 576→1536 projection, in float32 and as a
    4-bit quantized matmul (what the embedded model uses). On a GPU or a fast
    CPU BLAS this takes well under a millisecond.
    """
    import mlx.core as mx

    rows, inner, outer = 37, 576, 1536
    x = mx.random.normal((rows, inner))
    w = mx.random.normal((outer, inner))
    wq, scales, biases = mx.quantize(w, group_size=32, bits=4)
    mx.eval(x, w, wq, scales, biases)

    def best_of(step, repeat=5):
        step()
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            step()
            times.append(time.perf_counter() - began)
        return min(times)

    dense = best_of(lambda: mx.eval(x @ w.T))
    quantized = best_of(
        lambda: mx.eval(
            mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=32, bits=4)
        )
    )
    try:
        import numpy as np

        xn, wn = np.asarray(x), np.asarray(w)
        numpy_s = best_of(lambda: xn @ wn.T)
    except ImportError:
        numpy_s = None
    flops = 2 * rows * inner * outer
    if numpy_s:
        extra = {"numpy_ms": numpy_s * 1000, "numpy_gflops": flops / numpy_s / 1e9}
    else:
        extra = {}
    return {
        **extra,
        "shape": f"({rows}×{inner}) · ({inner}×{outer})",
        "float32_ms": dense * 1000,
        "float32_gflops": flops / dense / 1e9,
        "q4_ms": quantized * 1000,
        "q4_gflops": flops / quantized / 1e9,
        "device": str(mx.default_device()),
    }


def write_report(
    results: Sequence[ScenarioResult],
    path,
    *,
    plots: Sequence = (),
    command: str = "python -m mlx_magic.bench",
    started: Optional[str] = None,
    total_s: Optional[float] = None,
    probe: Optional[dict] = None,
    appendix=None,
) -> Path:
    """Write the Markdown report (machine, versions, command, table, plots, notes).

    ``probe`` is :func:`mlx_probe`'s answer; ``appendix`` a Markdown file whose
    text is added at the end (hand-written investigations, kept across runs).
    """
    path = Path(path)
    info = machine()
    found = versions()
    missed = [(r.name, m) for r in results for m in r.metrics if m.passed is False]
    errors = [r for r in results if r.error]
    lines = [
        "# Benchmarks",
        "",
        "mlx_magic measured against raw mlx-lm / mlx-vlm on the same machine, in one run: "
        "each scenario alternates baseline and magic repetition by repetition. The magic "
        "runs in a real Jupyter kernel driven by jupyter_client, as a frontend drives it. "
        "Regenerate this file (and the plots in `benchmarks/`) with the command below.",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores",
        f"- Memory: {info['memory_gb']} GB",
        f"- OS: {info['os']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
    ]
    if probe:
        lines.append(
            f"- MLX speed on this machine ({probe['device']}): a {probe['shape']} matmul (one "
            f"SmolLM2 MLP projection over a 37-token prompt) takes {probe['float32_ms']:.1f} ms "
            f"in float32 ({probe['float32_gflops']:.1f} GFLOP/s) and {probe['q4_ms']:.1f} ms "
            f"4-bit quantized ({probe['q4_gflops']:.1f} GFLOP/s)"
            + (
                f"; numpy's BLAS does it in {probe['numpy_ms']:.1f} ms "
                f"({probe['numpy_gflops']:.1f} GFLOP/s)"
                if "numpy_ms" in probe
                else ""
            )
            + ": this is why SmolLM2 reads prompts at only a few tokens per second here"
        )
    if started:
        lines.append(f"- Run: {started}" + (f", {total_s / 60:.1f} min" if total_s else ""))
    loads = [load for r in results for load in r.load if load == load]
    if loads:
        cores = os.cpu_count() or 1
        busy = max(loads) > 0.8 * cores
        lines.append(
            f"- Load average (1 min) at scenario starts and ends: {min(loads):.2f}–{max(loads):.2f} "
            "(the benchmark itself keeps about one core busy)"
            + (
                " — other work ran on the machine during part of the run; both sides of each "
                "comparison were measured under the same conditions, interleaved"
                if busy
                else ""
            )
        )
    lines += ["", "## Results", "", table(results, markdown=True), ""]
    lines += [
        "Each cell shows min / median over the repetitions; the ratio compares the medians "
        "(`×` = ours ÷ baseline, `faster` = baseline ÷ ours, `+` = what ours adds). "
        "`info` rows have no target.",
        "",
    ]
    if missed or errors:
        lines += [
            "**Misses:** "
            + ("; ".join(f"{name}: {m.name}" for name, m in missed) or "none")
            + (
                " — **errors:** " + "; ".join(f"{r.name}: {r.error}" for r in errors)
                if errors
                else ""
            ),
            "",
        ]
    else:
        lines += ["Every target was met.", ""]
    plot_names = {Path(p).stem: Path(p) for p in plots}
    for result in results:
        lines += [f"## {result.name}", ""]
        if result.title:
            lines += [result.title, ""]
        if result.setup:
            lines += ["Setup: " + "; ".join(f"{k}: {v}" for k, v in result.setup.items()), ""]
        if result.name in plot_names:
            relative = os.path.relpath(plot_names[result.name], path.parent)
            lines += [f"![{result.name}]({Path(relative).as_posix()})", ""]
        for note in result.notes:
            lines += [note, ""]
        if result.error:
            lines += [f"**Error:** `{result.error}`", ""]
        lines += [
            f"<sub>{result.seconds:.0f} s; load average "
            f"{' → '.join(f'{x:.2f}' for x in result.load)}"
            + (f"; ran {result.ran}" if result.ran else "")
            + "</sub>",
            "",
        ]
    if appendix is not None and Path(appendix).is_file():
        lines += [Path(appendix).read_text(encoding="utf-8").strip(), ""]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


def save_json(results: Sequence[ScenarioResult], path) -> Path:
    """Every sample, as JSON (for a later look; the report is made from the same data)."""
    path = Path(path)
    data = {
        "machine": machine(),
        "versions": versions(),
        "results": [asdict(result) for result in results],
    }
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def load_json(path) -> list[ScenarioResult]:
    """The results :func:`save_json` wrote."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = []
    for item in data["results"]:
        metrics = [Metric(**metric) for metric in item.pop("metrics", [])]
        item["load"] = tuple(item.get("load", ()))
        results.append(ScenarioResult(**item, metrics=metrics))
    return results


def merge(fresh: Sequence[ScenarioResult], kept: Sequence[ScenarioResult]) -> list[ScenarioResult]:
    """The fresh results, and the kept ones of the scenarios not run again, in
    :data:`SCENARIOS` order."""
    by_name = {result.name: result for result in kept}
    by_name.update({result.name: result for result in fresh})
    return [by_name[name] for name in SCENARIOS if name in by_name]


# --------------------------------------------------------------------------
# Command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic.bench",
        description="Measure mlx_magic against raw mlx-lm / mlx-vlm, side by side.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repetition, tiny models where possible (a smoke run)",
    )
    parser.add_argument("--scenarios", help="comma-separated, from: " + ", ".join(SCENARIOS))
    parser.add_argument(
        "--out",
        default="BENCHMARKS.md",
        help="the Markdown report to write (default: BENCHMARKS.md); "
        "plots go to benchmarks/ next to it; '-' writes none",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="run only --scenarios and keep the other scenarios' results "
        "from the report's benchmarks/results.json",
    )
    args = parser.parse_args(argv)
    if args.update and (not args.scenarios or args.out == "-"):
        parser.error("--update needs --scenarios and a report to update (--out)")
    names = None
    if args.scenarios:
        names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown:
            parser.error(
                f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
            )
    import shlex

    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m mlx_magic.bench", *map(shlex.quote, given)])
    started_at = time.strftime("%Y-%m-%d %H:%M %Z")
    began = time.perf_counter()

    def progress(line: str) -> None:
        print(f"{time.perf_counter() - began:7.1f}s {line}", flush=True)

    probe = mlx_probe()
    progress(
        f"MLX matmul probe: {probe['float32_gflops']:.1f} GFLOP/s float32, "
        f"{probe['q4_gflops']:.1f} GFLOP/s 4-bit"
    )
    results = run(names, quick=args.quick, progress=progress)
    total = time.perf_counter() - began
    for result in results:
        result.ran = f"{started_at}: `{command}`"
    print()
    print(table(results))
    if args.out != "-":
        out = Path(args.out)
        folder = out.parent / "benchmarks"
        failed_now = any(r.error for r in results)
        if args.update and (folder / "results.json").is_file():
            # One report from both runs; each scenario says when it ran.
            results = merge(results, load_json(folder / "results.json"))
            command, started_at, total = "python -m mlx_magic.bench", None, None
        plots = plot(results, folder)
        save_json(results, folder / "results.json")
        write_report(
            results,
            out,
            plots=plots,
            command=command,
            started=started_at,
            total_s=total,
            probe=probe,
            appendix=folder / "investigations.md",
        )
        if args.update:
            return 1 if failed_now else 0
        print(f"\nWrote {out} and {len(plots)} plot(s) in {folder}/")
    failed = any(r.error for r in results)
    return 1 if failed else 0
