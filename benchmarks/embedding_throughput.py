"""Embeddings batched against one at a time: the throughput of ``%mlx embed``.

The same texts go to the runtime's ``embed`` in one request with a batch size
(sorted by length, padded together, one forward pass per batch) or with batch
size 1 (one forward pass per text, as a loop of cells would). Repetitions
alternate the two orders; each pair gives a ratio. The vectors are checked to
be the same both ways.

The model is a tiny random Qwen3-Embedding of mlx-vlm's own class (``--hidden``
and ``--layers`` size it; the default 256 × 4 is ~2.5 M parameters), or an
embedding model's folder (``--model``).

    python benchmarks/embedding_throughput.py [--model FOLDER] [--hidden 256] [--layers 4]
        [--heads 4] [--texts 256] [--batch-size 32] [--repetitions 3]

(``--hidden 1024 --layers 28 --heads 16`` is Qwen3-Embedding-0.6B's shape.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np

from benchmarks.batch_throughput import TOPICS
from mlx_magic.models.resolve import resolve_model
from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.vocabulary.embedding import EmbedRequest


def texts(count: int) -> tuple[str, ...]:
    """``count`` sentences of 5 to 40 words, in no order of length."""
    out = []
    for index in range(count):
        topic = TOPICS[index % len(TOPICS)]
        words = 5 + (index * 7) % 36
        out.append(" ".join([f"A note about {topic}:"] + ["and more about it"] * (words // 4)))
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an embedding model's folder (default: a tiny one)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    if args.model:
        folder = Path(args.model)
    else:
        from mlx_magic.testing.tiny_models.embedders import build_tiny_text_embedder

        folder = build_tiny_text_embedder(
            Path(tempfile.mkdtemp(prefix="embed-bench-")) / "tiny",
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=args.heads,
        )
    spec = resolve_model(str(folder))
    runtime = ThreadRuntime(8 << 30)
    runtime.load(spec)
    items = texts(args.texts)

    def once(batch_size: int) -> tuple[float, np.ndarray, int]:
        made = runtime.embed(EmbedRequest(spec, texts=items, batch_size=batch_size))
        return len(items) / made.seconds, made.vectors, made.tokens

    once(args.batch_size), once(1)  # warm-up
    runs: dict[int, list[tuple[float, np.ndarray, int]]] = {args.batch_size: [], 1: []}
    order = (args.batch_size, 1)
    for repetition in range(args.repetitions):
        for size in order if repetition % 2 == 0 else order[::-1]:
            runs[size].append(once(size))
    runtime.stop()
    batched, alone = runs[args.batch_size], runs[1]
    gap = max(float(np.abs(b[1] - a[1]).max()) for b, a in zip(batched, alone))
    ratios = [b[0] / a[0] for b, a in zip(batched, alone)]
    print(
        f"{spec.name}: {len(items)} texts ({batched[0][2]:,} tokens), batch {args.batch_size} "
        f"against 1, {args.repetitions} pairs alternated; largest difference between the "
        f"vectors: {gap:.2e}"
    )
    for label, rows in (("batched", batched), ("one at a time", alone)):
        rates = [r[0] for r in rows]
        print(
            f"{label:13s} median {statistics.median(rates):8.1f} texts/s "
            f"({', '.join(f'{r:.1f}' for r in rates)})"
        )
    print(
        f"batched ÷ one at a time: median {statistics.median(ratios):.2f}× "
        f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
