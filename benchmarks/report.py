"""The results as text: the table (plain or Markdown) and the Markdown report
(machine, versions, command, table, plots, notes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.machine import machine, versions
from benchmarks.metrics import DIFFERENCE, SPEEDUP, Metric, ScenarioResult, median, minimum

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
    low, mid = minimum(values), median(values)
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


def write_report(
    results: Sequence[ScenarioResult],
    path,
    *,
    plots: Sequence = (),
    command: str = "python -m benchmarks",
    started: Optional[str] = None,
    total_s: Optional[float] = None,
    probe: Optional[dict] = None,
    appendix=None,
) -> Path:
    """Write the Markdown report (machine, versions, command, table, plots, notes).

    ``probe`` is :func:`~benchmarks.machine.mlx_probe`'s answer; ``appendix`` a Markdown file whose
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
        (
            "mlx_magic measured against raw mlx-lm / mlx-vlm on the same machine, in one run: "
            "each scenario alternates baseline and magic repetition by repetition. The magic "
            "runs in a real Jupyter kernel driven by jupyter_client, as a frontend drives it. "
            "Regenerate this file (and the plots in `benchmarks/`) with the command below."
        ),
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
        (
            "Each cell shows min / median over the repetitions; the ratio compares the medians "
            "(`×` = ours ÷ baseline, `faster` = baseline ÷ ours, `+` = what ours adds). "
            "`info` rows have no target."
        ),
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
    kept = kept_gpu_section(path)
    if kept:
        lines += ["", kept]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


#: The first line of the GPU section of BENCHMARKS.md: from it to the end of the
#: file, a regeneration on this machine keeps the text as it was (the GPU run is
#: made elsewhere: ``python -m benchmarks.gpu``, docs/gpu.md).
GPU_SECTION_MARKER = "<!-- GPU section: kept as is by write_report; see docs/gpu.md -->"


def kept_gpu_section(path) -> str:
    """The GPU section of the report at ``path`` (marker line to the end), or ''."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""
    start = text.find(GPU_SECTION_MARKER)
    return text[start:].strip() if start >= 0 else ""
