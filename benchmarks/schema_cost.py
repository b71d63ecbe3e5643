"""What ``--schema`` costs a decode: tokens per second with and without the constraint.

The same request runs with and without a JSON schema (llguidance's mask, applied
with MLX operations each step), alternated, in one thread runtime; each pair
gives a ratio. The schema is an object of long strings, so every answer runs
to ``--max-tokens`` with and without it.

    python benchmarks/schema_cost.py [--model tiny|smollm2] [--repetitions 6] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.batch_throughput import collect
from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "story": {"type": "string"},
        "moral": {"type": "string"},
    },
    "required": ["title", "story", "moral"],
    "additionalProperties": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", choices=["tiny", "smollm2"])
    parser.add_argument("--repetitions", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    if args.model == "smollm2":
        from mlx_magic.models.resolve import embedded_spec

        spec = embedded_spec()
    else:
        from mlx_magic.testing.tiny_models import build_tiny_llama

        folder = build_tiny_llama(Path(tempfile.mkdtemp(prefix="schema-bench-")) / "tiny")
        spec = ModelSpec(name="tiny-llama", key=str(folder), path=str(folder))
    runtime = ThreadRuntime(8 << 30)
    runtime.load(spec)
    sampling = SamplingParams(max_tokens=args.max_tokens)
    prompt = "Write a fable as JSON with a title, the story and its moral."

    def once(constrained: bool) -> tuple[float, int]:
        request = GenerationRequest(
            model=spec,
            prompt=prompt,
            sampling=sampling,
            schema_json=json.dumps(SCHEMA) if constrained else None,
        )
        ids, finished = collect(runtime.generate(request))
        return finished.stats.generation_tps, len(ids)

    once(True), once(False)  # warm-up: the grammar's tokenizer is built once per model
    runs: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    for repetition in range(args.repetitions):
        for constrained in (True, False) if repetition % 2 == 0 else (False, True):
            runs[constrained].append(once(constrained))
    runtime.stop()
    ratios = [a[0] / b[0] for a, b in zip(runs[True], runs[False])]
    print(f"{spec.name}: -n {args.max_tokens}, {args.repetitions} pairs alternated")
    for constrained in (True, False):
        tps = [r[0] for r in runs[constrained]]
        tokens = [r[1] for r in runs[constrained]]
        print(
            f"{'schema' if constrained else 'free':6s} median {statistics.median(tps):7.1f} tok/s "
            f"({', '.join(f'{t:.1f}' for t in tps)}); tokens {min(tokens)}–{max(tokens)}"
        )
    print(
        f"schema ÷ free: median {statistics.median(ratios):.3f} "
        f"(per pair: {', '.join(f'{r:.3f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
