"""What ``--draft`` brings: decode speed with and without a draft model, and
the share of tokens the draft proposed, through the magics' runtime and through
raw mlx-lm, in one run.

The pair is the embedded SmolLM2 (30 layers) and a draft made of its own first
layers (``mlx_magic.testing.drafts``: the same tokenizer by construction). Four
ways alternate in each repetition, so that every ratio is paired: raw
``mlx_lm.stream_generate`` without and with the draft, and the thread runtime
(what ``%%mlx`` uses) without and with it. Greedy, so both answers are the
same tokens.

    python benchmarks/draft_speed.py [--layers 8] [--num-draft 3] [--repetitions 4] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.batch_throughput import collect
from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec, SamplingParams

PROMPT = "Explain in a short paragraph why the sky is blue."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--num-draft", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    from mlx_magic.models.resolve import embedded_spec
    from mlx_magic.testing.drafts import build_layer_draft

    spec = embedded_spec()
    folder = Path(tempfile.mkdtemp(prefix="draft-bench-")) / f"smollm2-{args.layers}-layers"
    draft_folder = build_layer_draft("smollm2", folder, num_layers=args.layers)
    draft = ModelSpec(name=draft_folder.name, key=str(draft_folder), path=str(draft_folder))
    runtime = ThreadRuntime(8 << 30)
    runtime.load(spec)
    runtime.load(draft)
    sampling = SamplingParams(max_tokens=args.max_tokens)

    def magic(with_draft: bool) -> tuple[float, float, list[int]]:
        request = GenerationRequest(
            model=spec,
            prompt=PROMPT,
            sampling=sampling,
            draft=draft if with_draft else None,
            num_draft_tokens=args.num_draft,
        )
        ids, finished = collect(runtime.generate(request))
        stats = finished.stats
        return stats.generation_tps, stats.drafted_tokens / max(1, stats.generation_tokens), ids

    raw = raw_generation(spec, draft, args)
    magic(True), magic(False), raw(True), raw(False)  # warm-up, both ways
    runs: dict[tuple[str, bool], list[tuple[float, float, list[int]]]] = {
        (way, drafted): [] for way in ("magic", "raw") for drafted in (True, False)
    }
    for repetition in range(args.repetitions):
        order = [True, False] if repetition % 2 == 0 else [False, True]
        for drafted in order:
            runs[("magic", drafted)].append(magic(drafted))
            runs[("raw", drafted)].append(raw(drafted))
    runtime.stop()

    same = all(r[2] == runs[("magic", False)][0][2] for r in runs[("magic", True)])
    print(
        f"SmolLM2 with a draft of its first {args.layers} layers, --num-draft {args.num_draft}, "
        f"-n {args.max_tokens}, {args.repetitions} repetitions alternated; greedy answers with "
        f"and without the draft identical: {same}"
    )
    for (way, drafted), rows in runs.items():
        tps = [r[0] for r in rows]
        shares = [r[1] for r in rows]
        print(
            f"{way:5s} {'draft   ' if drafted else 'no draft'} median {statistics.median(tps):6.1f} "
            f"tok/s ({', '.join(f'{t:.1f}' for t in tps)}); from the draft "
            f"{statistics.median(shares):.0%}"
        )
    for way in ("magic", "raw"):
        ratios = [a[0] / b[0] for a, b in zip(runs[(way, True)], runs[(way, False)])]
        print(
            f"{way}: draft ÷ no draft median {statistics.median(ratios):.3f} "
            f"(per repetition: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    ratios = [a[0] / b[0] for a, b in zip(runs[("magic", True)], runs[("raw", True)])]
    print(
        f"with the draft, magic ÷ raw median {statistics.median(ratios):.3f} "
        f"(per repetition: {', '.join(f'{r:.3f}' for r in ratios)})"
    )


def raw_generation(spec: ModelSpec, draft: ModelSpec, args):
    """mlx-lm's own ``stream_generate``, on a thread of its own (MLX streams are
    per thread: the models are loaded where they run)."""
    import queue
    import threading

    calls: queue.Queue = queue.Queue()
    answers: queue.Queue = queue.Queue()

    def serve() -> None:
        from mlx_lm import load, stream_generate

        model, tokenizer = load(spec.path)[:2]
        draft_model = load(draft.path)[0]
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROMPT}], add_generation_prompt=True
        )
        while (with_draft := calls.get()) is not None:
            ids, last, drafted = [], None, 0
            for last in stream_generate(
                model,
                tokenizer,
                prompt,
                max_tokens=args.max_tokens,
                draft_model=draft_model if with_draft else None,
                num_draft_tokens=args.num_draft,
            ):
                ids.append(last.token)
                drafted += bool(last.from_draft)
            answers.put((last.generation_tps, drafted / max(1, len(ids)), ids))

    threading.Thread(target=serve, daemon=True).start()

    def once(with_draft: bool):
        calls.put(with_draft)
        return answers.get()

    return once


if __name__ == "__main__":
    main()
