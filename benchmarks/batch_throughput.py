"""Batched decoding against one answer at a time: the throughput of ``--map``.

32 prompts go to the runtime either together (``generate_together`` with a
batch size: mlx-lm's ``BatchGenerator``, continuous batching, the template's
shared beginning read once) or one after the other (``generate``, each with
the prefix cache, as 32 cells would). Repetitions alternate the two orders;
each pair gives a ratio. The same greedy tokens come out both ways (checked).

    python benchmarks/batch_throughput.py [--model smollm2|tiny] [--repetitions 3]
        [--prompts 32] [--batch-size 8] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.runtime.values import (
    Failed,
    Finished,
    GenerationRequest,
    ModelSpec,
    SamplingParams,
    TokenChunk,
)

TOPICS = [
    "rivers",
    "volcanoes",
    "owls",
    "bridges",
    "glaciers",
    "tea",
    "comets",
    "bees",
    "deserts",
    "violins",
    "lighthouses",
    "maple trees",
    "tides",
    "penguins",
    "clocks",
    "coral reefs",
    "trains",
    "honey",
    "storms",
    "chess",
    "caves",
    "kites",
    "salt",
    "whales",
    "paper",
    "moss",
    "bicycles",
    "snow",
    "maps",
    "cheese",
    "wolves",
    "glass",
]


def spec_for(name: str) -> ModelSpec:
    if name == "smollm2":
        from mlx_magic.models.resolve import embedded_spec

        return embedded_spec()
    from mlx_magic.testing.tiny_models import build_tiny_llama

    folder = build_tiny_llama(Path(tempfile.mkdtemp(prefix="batch-bench-")) / "tiny")
    return ModelSpec(name="tiny-llama", key=str(folder), path=str(folder))


def collect(job) -> tuple[list[int], Finished]:
    ids: list[int] = []
    while True:
        event = job.next_event(600)
        if isinstance(event, TokenChunk):
            ids.extend(event.token_ids)
        elif isinstance(event, Finished):
            return ids, event
        elif isinstance(event, Failed):
            raise RuntimeError(event.message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    spec = spec_for(args.model)
    runtime = ThreadRuntime(8 << 30)
    runtime.load(spec)
    sampling = SamplingParams(max_tokens=args.max_tokens)
    prompts = [f"Write one sentence about {TOPICS[i % len(TOPICS)]}." for i in range(args.prompts)]

    def batched():
        requests = [
            GenerationRequest(model=spec, prompt=p, sampling=sampling, batch_size=args.batch_size)
            for p in prompts
        ]
        return [collect(job) for job in runtime.generate_together(requests)]

    def one_at_a_time():
        return [
            collect(runtime.generate(GenerationRequest(model=spec, prompt=p, sampling=sampling)))
            for p in prompts
        ]

    # Warm-up: the prefix cache holds the template's beginning for both.
    one_at_a_time()
    runs: dict[str, list[tuple[float, int]]] = {"batched": [], "alone": []}
    reference = None
    for repetition in range(args.repetitions):
        order = [("batched", batched), ("alone", one_at_a_time)]
        if repetition % 2:
            order.reverse()
        for name, run in order:
            started = time.perf_counter()
            answers = run()
            wall = time.perf_counter() - started
            tokens = sum(len(ids) for ids, _ in answers)
            runs[name].append((wall, tokens))
            ids = [ids for ids, _ in answers]
            if reference is None:
                reference = ids
            assert ids == reference, f"{name}: greedy tokens differ from the first run"
    runtime.stop()

    def line(name):
        walls = [wall for wall, _ in runs[name]]
        tokens = runs[name][0][1]
        wall = statistics.median(walls)
        return (
            f"{name:8s} median {wall:7.2f} s · {tokens / wall:7.1f} generated tok/s · "
            f"{args.prompts / wall * 60:6.1f} answers/min  (runs: "
            + ", ".join(f"{w:.2f}" for w in walls)
            + " s)"
        )

    ratios = [a[0] / b[0] for a, b in zip(runs["alone"], runs["batched"])]
    print(
        f"{spec.name}: {args.prompts} prompts, -n {args.max_tokens}, batch {args.batch_size}, "
        f"{args.repetitions} pairs alternated; greedy tokens identical both ways"
    )
    print(line("batched"))
    print(line("alone"))
    print(
        f"batched ÷ alone throughput: median {statistics.median(ratios):.2f}× "
        f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
