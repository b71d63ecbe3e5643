"""The GPU run's results as a Markdown section (for BENCHMARKS.md), and the
machine facts that go with it: :func:`gpu_facts`, :func:`section`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.metrics import ScenarioResult
from benchmarks.report import table


def gpu_facts() -> dict:
    """The GPU (nvidia-smi, if there), MLX's device and a bf16 matmul's speed."""
    facts: dict = {}
    try:
        line = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
        if line:
            facts["nvidia_smi"] = line.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import mlx.core as mx

        facts["mlx_device"] = str(mx.default_device())
        try:
            info = mx.device_info()
            facts["mlx_device_info"] = {
                k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in info.items()
            }
        except Exception:  # noqa: BLE001 - informational only
            pass
        gpu = mx.default_device().type == mx.gpu
        n = 4096 if gpu else 256
        facts["matmul_n"] = n
        a = mx.random.normal((n, n)).astype(mx.bfloat16)
        b = mx.random.normal((n, n)).astype(mx.bfloat16)
        mx.eval(a, b, a @ b)
        times = []
        for _ in range(5):
            began = time.perf_counter()
            mx.eval([a @ b for _ in range(10)])
            times.append((time.perf_counter() - began) / 10)
        facts["bf16_matmul_tflops"] = 2 * n**3 / min(times) / 1e12
    except Exception as error:  # noqa: BLE001 - informational only
        facts["mlx_error"] = f"{type(error).__name__}: {error}"
    return facts


def section(
    results: Sequence[ScenarioResult],
    *,
    facts: dict,
    machine: dict,
    versions: dict,
    commands: Sequence[str],
    started: str,
    builds: Optional[dict] = None,
    heading: str = "## GPU",
) -> str:
    """The run as one Markdown section: machine, versions, commands, the table,
    then each scenario's title, setup and notes (one heading level below ``heading``)."""
    lines = [heading, ""]
    lines += [
        (
            f"- GPU: {facts.get('nvidia_smi', 'none found')}; MLX device "
            f"{facts.get('mlx_device', '?')}; a bf16 {facts.get('matmul_n', '?')}² matmul at "
            f"{facts.get('bf16_matmul_tflops', float('nan')):.3g} TFLOP/s"
        ),
        (
            f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores; memory "
            f"{machine.get('memory_gb')} GB (as the OS reported it at the start); OS {machine.get('os')}"
        ),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Ran: {started}",
    ]
    if builds:
        lines.append(
            "- Models (random weights, 4-bit, group size 64; built on the GPU): "
            + "; ".join(
                f"{name} {info['gb']:.2f} GB in {info['s']:.0f} s" for name, info in builds.items()
            )
        )
    lines += ["", "```bash", *commands, "```", ""]
    lines += [table(results, markdown=True), ""]
    level = len(heading) - len(heading.lstrip("#"))
    for result in results:
        lines += [f"{'#' * (level + 1)} GPU: {result.name}", ""]
        if result.title:
            lines += [result.title, ""]
        if result.setup:
            lines += ["Setup: " + "; ".join(f"{k}: {v}" for k, v in result.setup.items()), ""]
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
    return "\n".join(lines).rstrip() + "\n"


def load_run(path) -> dict:
    """A run's JSON (see :func:`benchmarks.gpu.cli.save_run`), results as objects."""
    from benchmarks.metrics import Metric

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = []
    for item in data.get("results", []):
        metrics = [Metric(**metric) for metric in item.pop("metrics", [])]
        item["load"] = tuple(item.get("load", ()))
        results.append(ScenarioResult(**item, metrics=metrics))
    data["results"] = results
    return data
