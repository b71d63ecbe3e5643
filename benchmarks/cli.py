"""The command line: ``python -m benchmarks``.

::

    python -m benchmarks [--quick] [--scenarios a,b,...] [--out BENCHMARKS.md] [--update]
                         [--profile MODELS.json]

It probes MLX's speed, runs the scenarios (:func:`~benchmarks.runner.run`),
prints the table, then writes the plots (PNG) and ``results.json`` to
``benchmarks/`` next to the report, and the report (Markdown).

``--quick`` runs one repetition with the tiny random models wherever the
scenario allows it (SmolLM2 only for its row of ``overhead``, a few tokens):
it checks that everything runs, its numbers are not the ones to quote.

``--profile`` runs the scenarios on other models (random models of real shapes
on a GPU: ``python -m benchmarks.gpu`` builds them and writes the file).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.machine import mlx_probe
from benchmarks.plots import plot
from benchmarks.report import table, write_report
from benchmarks.results_json import load_json, merge, save_json
from benchmarks.runner import SCENARIOS, run


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark from the command line; the exit status is 1 if a scenario failed."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
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
    parser.add_argument(
        "--profile",
        help="a JSON file naming the models to run on instead of SmolLM2 and the tiny "
        "models (see benchmarks.harness.profile; python -m benchmarks.gpu writes one)",
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
    command = " ".join(["python -m benchmarks", *map(shlex.quote, given)])
    started_at: Optional[str] = time.strftime("%Y-%m-%d %H:%M %Z")
    began = time.perf_counter()

    def progress(line: str) -> None:
        print(f"{time.perf_counter() - began:7.1f}s {line}", flush=True)

    probe = mlx_probe()
    progress(
        f"MLX matmul probe: {probe['float32_gflops']:.1f} GFLOP/s float32, "
        f"{probe['q4_gflops']:.1f} GFLOP/s 4-bit"
    )
    profile = None
    if args.profile:
        from benchmarks.harness import Profile

        profile = Profile.load(args.profile)
    results = run(names, quick=args.quick, progress=progress, profile=profile)
    total: Optional[float] = time.perf_counter() - began
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
            command, started_at, total = "python -m benchmarks", None, None
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
