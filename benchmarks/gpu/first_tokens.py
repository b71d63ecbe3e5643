"""The probe's parts about the first token (see :mod:`benchmarks.gpu.probe`).

* ``jit``: the first long prompt in a fresh process, raw mlx-lm at a fixed
  ``prefill_step_size`` or the magic (one ``--variant`` per process).
* ``questions``: new short questions to a warm model, raw mlx-lm against the magic.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Optional

from benchmarks.gpu.probe_log import say


def probe_request(spec, tokens: int, prompt: str, *, raw: bool = False, cache: bool = False):
    """A greedy request of ``tokens`` tokens, the prefix cache on or off."""
    from mlx_magic.vocabulary.values import GenerationRequest, PrefixCacheSettings, SamplingParams

    return GenerationRequest(
        model=spec,
        prompt=prompt,
        raw=raw,
        sampling=SamplingParams(max_tokens=tokens),
        prefix_cache=PrefixCacheSettings(enabled=cache),
    )


def jit(runtime, profile, reps: int) -> dict:
    """Is the first long prompt slow because of new shapes? One ``--variant`` per
    process (so no variant finds another's compiled kernels): ``raw-16``,
    ``raw-97``, ``raw-2048`` (raw mlx-lm at that ``prefill_step_size``), or
    ``magic``, ``magic-2048``, ``magic-pow2`` (the magic as is; with its prefill
    step fixed at 2048, mlx-lm's default; rounded down to a power of two). Each
    reads three different prompts of the same length in a row."""

    from benchmarks.harness import InProcessText, long_document
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.display.views import StreamView
    from mlx_magic.engine import text_generation
    from mlx_magic.models.resolve import resolve_model

    model = profile.long
    assert model is not None
    variant = VARIANT[0]
    size = profile.long_tokens[0]
    results: dict = {}
    if variant.startswith("raw-"):
        step = int(variant.split("-", 1)[1])
        baseline = InProcessText(Path(model.path))
        count = lambda text: len(baseline.tokenizer.encode(text))  # noqa: E731
        for attempt in (1, 2, 3):
            document = long_document(count, size - 50) + f" (attempt {attempt})"
            ids = baseline.prompt_ids(document + "\n\nSummarise this.")
            took = raw_first_token_s(baseline, ids, step)
            results[str(attempt)] = took
            say(
                f"{variant}: raw mlx-lm, {len(ids)} tokens, prefill_step_size {step}, "
                f"prompt {attempt}: TTFT {took * 1000:.0f} ms"
            )
        return results
    original = text_generation.prefill_step_size
    choosers = {
        "magic": original,
        "magic-2048": lambda tokens_per_s: 2048,
        "magic-pow2": lambda tokens_per_s: 1 << (original(tokens_per_s).bit_length() - 1),
    }
    text_generation.prefill_step_size = choosers[variant]
    try:
        spec = resolve_model(model.path)
        runtime.load(spec)
        from mlx_lm.tokenizer_utils import load as load_tokenizer

        tokenizer = load_tokenizer(Path(model.path))
        count = lambda text: len(tokenizer.encode(text))  # noqa: E731
        for attempt in (1, 2, 3):
            document = long_document(count, size - 50) + f" (attempt {attempt})"
            request = probe_request(spec, 1, document + "\n\nSummarise this.")
            outcome = stream_job(runtime.generate(request), StreamView(), interval_s=0.2)
            stats = outcome.result.stats
            results[str(attempt)] = stats.ttft_s
            say(
                f"{variant}: the magic, fresh load, {stats.prompt_tokens} tokens, prompt "
                f"{attempt}: TTFT {stats.ttft_s * 1000:.0f} ms ({stats.prompt_tps:.0f} tokens/s)"  # type: ignore[operator]
            )
    finally:
        text_generation.prefill_step_size = original
    return results


def raw_first_token_s(baseline, ids: list, step: Optional[int] = None) -> float:
    """Seconds for raw ``mlx_lm.stream_generate`` to give its first token for
    ``ids`` (greedy), at ``prefill_step_size`` ``step`` (``None``: mlx-lm's default)."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    options = {} if step is None else {"prefill_step_size": step}
    began = time.perf_counter()
    for _response in stream_generate(
        baseline.model,
        baseline.tokenizer,
        mx.array(ids),
        max_tokens=1,
        sampler=make_sampler(temp=0.0),
        **options,
    ):
        break
    return time.perf_counter() - began


#: New short questions, each of its own length (so each is a new prompt shape).
QUESTIONS = (
    "What is a lighthouse?",
    "Name three rivers in Europe, please.",
    "Why is the sky blue during the day but red at sunset?",
    "Explain in one sentence what a prime number is and give an example of one.",
    "Which is heavier, a kilogram of feathers or a kilogram of iron, and why do people get it wrong?",
    "Write a haiku about snow.",
    "How many legs does a spider have, and how many does an insect have?",
    "Tell me one fact about the Moon that most people do not know, in plain words.",
)


def questions(runtime, profile, reps: int) -> dict:
    """A warm model's time to first token on new short questions: raw mlx-lm
    and the magic (runtime side, prefix cache on, as a user has it), each
    question asked of both in turn, the side that goes first alternating, so
    that neither always meets a new prompt shape first (on the CUDA backend a
    new shape can cost kernel compilation, which the second side then finds
    done). Warm-up: one question of another length on each side. ``--variant
    magic-nocache`` turns the magic's prefix cache off (then it reads each whole
    prompt, as raw mlx-lm does, instead of what follows the shared chat-template
    beginning)."""

    from benchmarks.harness import InProcessText
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.values import (
        Finished,
        GenerationRequest,
        PrefixCacheSettings,
        SamplingParams,
    )

    results: dict = {}
    for model in [m for m in profile.warm if m.small]:
        spec = resolve_model(model.path)
        runtime.load(spec)
        baseline = InProcessText(Path(model.path))

        def raw(text: str) -> float:
            return raw_first_token_s(baseline, baseline.prompt_ids(text))

        cache = PrefixCacheSettings(enabled=VARIANT[0] != "magic-nocache")

        def magic(text: str) -> float:
            request = GenerationRequest(
                model=spec, prompt=text, sampling=SamplingParams(max_tokens=1), prefix_cache=cache
            )
            job = runtime.generate(request)
            while True:
                event = job.next_event(600)
                if isinstance(event, Finished):
                    return event.stats.ttft_s or 0.0

        raw("Hello there, how are you?")
        magic("Hello there, how are you?")
        rows = []
        for index, text in enumerate(QUESTIONS):
            order = [("raw", raw), ("magic", magic)]
            if index % 2:
                order.reverse()
            row: dict = {"question": index, "first": order[0][0]}
            for name, run in order:
                row[name] = run(text)
            rows.append(row)
            say(
                f"{model.label:14s} question {index} ({row['first']} first): raw "
                f"{row['raw'] * 1000:.0f} ms, magic {row['magic'] * 1000:.0f} ms"
            )
        for side in ("raw", "magic"):
            firsts = [r[side] for r in rows if r["first"] == side]
            seconds = [r[side] for r in rows if r["first"] != side]
            say(
                f"{model.label:14s} {side:5s} median TTFT: asked first "
                f"{statistics.median(firsts) * 1000:.0f} ms, asked second "
                f"{statistics.median(seconds) * 1000:.0f} ms"
            )
        results[model.label] = rows
    return results


VARIANT = ["magic"]
