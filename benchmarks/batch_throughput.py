"""Batched decoding against one answer at a time: the throughput of ``--map``.

32 prompts go to the runtime either together (``generate_together`` with a
batch size: mlx-lm's ``BatchGenerator``, continuous batching, the template's
shared beginning read once) or one after the other (``generate``, each with
the prefix cache, as 32 cells would). Repetitions alternate the two orders;
each pair gives a ratio. The same greedy tokens come out both ways (checked).

``--raw`` adds a third run to each repetition, the limit ``--map`` should
reach: the library's own batch generation on the same prompts (the chat
template applied, the same batch size, greedy), with no runtime around it:
``mlx_lm.batch_generate`` for text, ``mlx_vlm.batch_generate`` for vision,
on a second copy of the weights loaded in the main thread. Its ratio is
paired with the batched run next to it. mlx-vlm's has no batch size (it
decodes all the prompts it is given together) and applies the chat template
itself: it gets the plain prompts, ``--batch-size`` at a time (static batches).

With ``--model tiny-vlm`` (or a vision model's folder and ``--kind vision``)
each prompt asks about its own image (random pixels, ``--image-size``): the
batched run is mlx-vlm's ``BatchGenerator``. Every run sends the pictures
under new content keys, so that no run finds another's vision features in
the cache: each run reads its pictures as a ``--map`` over new images would.

    python benchmarks/batch_throughput.py [--model smollm2|tiny|tiny-vlm|FOLDER]
        [--kind text|vision] [--repetitions 3] [--prompts 32] [--batch-size 8]
        [--max-tokens 32] [--image-size 64]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.vocabulary.values import (
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


def spec_for(name: str, kind: str) -> ModelSpec:
    if name == "smollm2":
        from mlx_magic.models.resolve import embedded_spec

        return embedded_spec()
    if name in ("tiny", "tiny-vlm"):
        from mlx_magic.testing.tiny_models import build_tiny_llama, build_tiny_vlm

        build = build_tiny_vlm if name == "tiny-vlm" else build_tiny_llama
        folder = build(Path(tempfile.mkdtemp(prefix="batch-bench-")) / name)
        kind = "vision" if name == "tiny-vlm" else "text"
        return ModelSpec(name=name, key=str(folder), path=str(folder), kind=kind)
    return ModelSpec(name=Path(name).name, key=name, path=name, kind=kind)


def pictures(count: int, size: int) -> list:
    """One random RGB picture per prompt (the same ones in every run)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


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


class TokenRecorder:
    """mlx-vlm's detokenizer, keeping the token ids added after each reset."""

    def __init__(self, detokenizer):
        self.detokenizer = detokenizer
        self.answers: list[list[int]] = []

    def reset(self):
        self.answers.append([])
        self.detokenizer.reset()

    def add_token(self, token, *args, **kwargs):
        self.answers[-1].append(int(token))
        self.detokenizer.add_token(token, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.detokenizer, name)


def raw_batches(spec: ModelSpec, prompts: list[str], images: list, args):
    """A run of the library's own batch generation over ``prompts``: each
    returns ``(token ids, None)`` per prompt, as :func:`collect` does."""
    if spec.kind == "vision":
        import mlx_vlm

        model, processor = mlx_vlm.load(spec.path)
        # batch_generate gives texts only; its detokenizer sees each answer's
        # token ids (reset, then every token): kept here, exact, for the count.
        recorder = TokenRecorder(processor.detokenizer)
        processor.detokenizer = recorder

        def run_vision():
            # mlx-vlm's batch_generate applies the chat template itself (one
            # image placeholder per prompt): prompts given already templated
            # get a second placeholder, and Qwen2-VL then finds twice as many
            # image slots as images ("index 16 is out of bounds for axis 0
            # with size 16"). It also decodes all the prompts it is given in
            # one batch (no batch size of its own): so it gets ``--batch-size``
            # prompts at a time, each chunk a static batch.
            answers: list[list[int]] = []
            for start in range(0, len(prompts), args.batch_size):
                chunk = slice(start, start + args.batch_size)
                recorder.answers = []
                mlx_vlm.batch_generate(
                    model,
                    processor,
                    images=[pictures[0] for pictures in images[chunk]],
                    prompts=prompts[chunk],
                    max_tokens=args.max_tokens,
                )
                # The first reset is batch_generate's own, before any answer.
                answers.extend(recorder.answers[1:])
            return [(ids, None) for ids in answers]

        return run_vision
    import mlx_lm
    from mlx_lm.generate import batch_generate

    model, tokenizer = mlx_lm.load(spec.path)
    ids = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
        )
        for prompt in prompts
    ]

    def run_text():
        response = batch_generate(
            model,
            tokenizer,
            ids,
            max_tokens=args.max_tokens,
            return_token_ids=True,
            completion_batch_size=args.batch_size,
            prefill_batch_size=min(args.batch_size, 8),
        )
        return [(tokens, None) for tokens in response.token_ids]

    return run_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, tiny, tiny-vlm or a folder")
    parser.add_argument("--kind", default="text", choices=["text", "vision"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--raw", action="store_true", help="also the library's batch_generate")
    args = parser.parse_args()

    spec = spec_for(args.model, args.kind)
    runtime = ThreadRuntime(8 << 30)
    runtime.load(spec)
    sampling = SamplingParams(max_tokens=args.max_tokens)
    if spec.kind == "vision":
        images = [(picture,) for picture in pictures(args.prompts, args.image_size)]
        prompts = ["Describe this picture in one sentence."] * args.prompts
    else:
        images = [()] * args.prompts
        prompts = [
            f"Write one sentence about {TOPICS[i % len(TOPICS)]}." for i in range(args.prompts)
        ]

    run_numbers = itertools.count()

    def request(i: int, run: int, batch_size: int = 0) -> GenerationRequest:
        return GenerationRequest(
            model=spec,
            prompt=prompts[i],
            sampling=sampling,
            images=images[i],
            image_keys=tuple(f"run-{run}-picture-{i}" for _ in images[i]),
            batch_size=batch_size,
        )

    def batched():
        run = next(run_numbers)
        requests = [request(i, run, args.batch_size) for i in range(args.prompts)]
        return [collect(job) for job in runtime.generate_together(requests)]

    def one_at_a_time():
        run = next(run_numbers)
        return [collect(runtime.generate(request(i, run))) for i in range(args.prompts)]

    raw = raw_batches(spec, prompts, images, args) if args.raw else None
    # Warm-up: the prefix cache holds the template's beginning for all three, and the
    # batch shapes' kernels are compiled (on a GPU the first batched run paid for them).
    one_at_a_time()
    batched()
    if raw is not None:
        try:
            raw()
        except Exception as error:  # the library's own path: say so and go on without it
            print(f"raw batch_generate failed, left out: {type(error).__name__}: {error}")
            raw = None
    runs: dict[str, list[tuple[float, int]]] = {"batched": [], "alone": [], "raw": []}
    reference = None
    differ = {"batched": 0, "alone": 0, "raw": 0}
    for repetition in range(args.repetitions):
        order = [("batched", batched), ("alone", one_at_a_time)]
        if raw is not None:
            order.append(("raw", raw))
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
            differ[name] += sum(a != b for a, b in zip(ids, reference))
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
        f"{args.repetitions} pairs alternated; answers whose greedy tokens differ from the "
        f"first run's: batched {differ['batched']}, one at a time {differ['alone']} "
        f"(of {args.prompts * args.repetitions} each)"
    )
    print(line("batched"))
    print(line("alone"))
    print(
        f"batched ÷ alone throughput: median {statistics.median(ratios):.2f}× "
        f"(per pair: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    if runs["raw"]:
        print(line("raw"))
        # Throughput ratio: generated tokens per second, ours over the library's.
        paired = [(b[1] / b[0]) / (r[1] / r[0]) for b, r in zip(runs["batched"], runs["raw"])]
        print(
            f"batched (--map) ÷ raw batch_generate throughput: median "
            f"{statistics.median(paired):.2f}× (per pair: {', '.join(f'{r:.2f}' for r in paired)}); "
            f"raw answers whose greedy tokens differ from the first run's: {differ['raw']}"
        )


if __name__ == "__main__":
    main()
