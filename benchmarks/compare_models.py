"""Several models over one dataset in one cell, against each model's ``--map`` by hand.

One cell, ``%%mlx -m A -m B --map items``, runs every item through every
model (each model's items batched, one model after the other); by hand, a
user runs ``%%mlx -m A --map items`` and then ``%%mlx -m B --map items``.
Both run in one IPython shell with the extension loaded, both models warm
(loaded before the first repetition), greedy; repetitions alternate the
two orders and each pair gives a ratio of wall times. The tables are
checked to hold the same answers.

    python benchmarks/compare_models.py [--models smollm2,tiny] [--items 16]
        [--max-tokens 32] [--repetitions 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def model_path(name: str) -> str:
    """``smollm2`` (the embedded model) as it is, ``tiny`` built now, else a folder."""
    if name == "tiny":
        from mlx_magic.testing.tiny_models import build_tiny_llama

        return str(build_tiny_llama(Path(tempfile.mkdtemp(prefix="compare-bench-")) / "tiny"))
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,tiny")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell(config=config)
    shell.extension_manager.load_extension("mlx_magic")
    names = args.models.split(",")
    aliases = {f"m{i}": model_path(name) for i, name in enumerate(names)}
    shell.run_cell(f"%config MLXMagics.aliases = {aliases!r}").raise_error()
    topics = ["rivers", "owls", "bridges", "tea", "comets", "bees", "tides", "clocks"]
    items = [topics[i % len(topics)] + f" {i}" for i in range(args.items)]
    shell.user_ns["items"] = items
    flags = f"-n {args.max_tokens} --map items"
    prompt = "Write one sentence about {item}."

    def cell(line: str) -> object:
        shell.run_cell(f"%%mlx {line} {flags}\n{prompt}").raise_error()
        return shell.user_ns["_mlx"]

    for alias in aliases:  # both warm, and each model's prefix cache holds the template
        cell(f"-m {alias}")
    models = " ".join(f"-m {alias}" for alias in aliases)

    def together() -> list:
        table = cell(models)
        return [list(run.table["answer"]) for run in table.runs.values()]

    def by_hand() -> list:
        return [list(cell(f"-m {alias}").table["answer"]) for alias in aliases]

    walls: dict[str, list[float]] = {"one cell": [], "by hand": []}
    answers: dict[str, list] = {}
    for repetition in range(args.repetitions):
        order = [("one cell", together), ("by hand", by_hand)]
        if repetition % 2:
            order.reverse()
        for name, run in order:
            started = time.perf_counter()
            answers[name] = run()
            walls[name].append(time.perf_counter() - started)
    shell.extension_manager.unload_extension("mlx_magic")
    ratios = [hand / one for one, hand in zip(walls["one cell"], walls["by hand"])]
    same = answers["one cell"] == answers["by hand"]
    print(
        f"{' + '.join(names)}: {args.items} items, -n {args.max_tokens}, "
        f"{args.repetitions} pairs alternated; same answers both ways: {same}"
    )
    for name, times in walls.items():
        print(
            f"{name:9s} median {statistics.median(times):6.2f} s  (runs: "
            + ", ".join(f"{t:.2f}" for t in times)
            + " s)"
        )
    print(
        f"by hand ÷ one cell wall time: median {statistics.median(ratios):.2f}× "
        f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
