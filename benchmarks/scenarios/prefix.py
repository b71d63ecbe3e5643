"""Scenario ``prefix``: time to first token of questions about the same pasted
paragraph, with the prefix cache, without it, and in fresh processes."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import (
    DOCUMENT_QUESTIONS,
    PARAGRAPH,
    QUESTIONS,
    SYSTEM_PROMPT,
    Context,
    Kernel,
    cell,
    cold_process,
    long_document,
)
from benchmarks.metrics import (
    RATIO,
    SPEEDUP,
    Metric,
    ScenarioResult,
    median,
    median_of,
    ms,
    speedup,
)


def prefix(context: Context, result: ScenarioResult) -> None:
    """TTFT for questions about the same pasted paragraph, with and without the cache."""
    if context.profile is not None and context.profile.long is not None:
        _long_prefix(context, result, context.profile)
        return
    if context.quick:
        model, label, paragraph = "tiny-llama", "tiny llama", PARAGRAPH[:400]
        n_cached, n_uncached, n_cold = 3, 2, 1
        path = context.tiny_llama
    else:
        model, label, paragraph = "smollm2", "smollm2", PARAGRAPH
        # Each uncached question (or cold process) reads ~325 tokens: ~45 s on this CPU.
        n_cached, n_uncached, n_cold = 10, 3, 2
        path = context.smollm2
    result.title = (
        f"{n_cached} different questions after the same system prompt and pasted paragraph "
        f"({label}, `-n 1`, `%config MLXMagics.system_prompt`), interleaved: with the prefix "
        f"cache (all {n_cached}), without it (the first {n_uncached}), and as fresh `python -m "
        f"mlx_lm generate --system-prompt … --prompt …` processes (the first {n_cold}). Cells "
        "are timed from sending the request to receiving the answer's token (the cold process: "
        "from spawn to its statistics line), so the three are comparable; the runtime-side "
        "TTFT is in the plot's data. Targets: from the second question on, ≥ 5× faster "
        "than without the cache and ≥ 10× faster than the cold process."
    )
    result.setup = {
        "model": label,
        "cached questions": n_cached,
        "uncached": n_uncached,
        "cold processes": n_cold,
        "paragraph characters": len(paragraph),
    }
    cached, uncached, cold = [], [], []
    system = SYSTEM_PROMPT.replace("'", "’")
    with Kernel(
        context.aliases(), f"%mlx load {model}", f"%config MLXMagics.system_prompt = '{system}'"
    ) as kernel:
        kernel.generate(cell("mlx", f"-m {model} -n 1", "Hi."))  # warm-up, then forget it
        kernel.execute("%mlx cache clear")
        for number in range(n_cached):
            prompt = f"{paragraph}\n\n{QUESTIONS[number]}"
            kernel.execute("%config MLXMagics.prefix_cache = True")
            with_cache = kernel.generate(cell("mlx", f"-m {model} -n 1", prompt))
            cached.append(with_cache)
            line = (
                f"question {number + 1}: cached {with_cache.first_text_s:.2f} s "
                f"({with_cache.stats['cached_prompt_tokens']}/"
                f"{with_cache.stats['prompt_tokens']} tokens reused)"
            )
            if number < n_uncached:
                kernel.execute("%config MLXMagics.prefix_cache = False")
                without = kernel.generate(cell("mlx", f"-m {model} -n 1", prompt))
                uncached.append(without)
                line += f", uncached {without.first_text_s:.2f} s"
            if number < n_cold:
                process = cold_process(
                    "mlx_lm",
                    [
                        "--model",
                        path,
                        "--system-prompt",
                        system,
                        "--prompt",
                        prompt,
                        "--max-tokens",
                        "1",
                    ],
                )
                cold.append(process)
                line += (
                    f", cold process {process['ttft_s']:.2f} s ({process['prompt_tokens']} tokens)"
                )
            context.say(line)
        kernel.execute("%config MLXMagics.prefix_cache = True")
    later = [c.first_text_s for c in cached[1:]]
    result.series.update(
        model=label,
        prompt_tokens=cached[0].stats["prompt_tokens"],
        cached_ttft=[c.first_text_s for c in cached],
        uncached_ttft=[c.first_text_s for c in uncached],
        cold_ttft=[p["ttft_s"] for p in cold],
        cached_runtime_ttft=[c.stats["ttft_s"] for c in cached],
        uncached_runtime_ttft=[c.stats["ttft_s"] for c in uncached],
    )
    result.metrics += [
        Metric(
            "prefix",
            "TTFT, questions 2+: cache vs no cache",
            "s",
            [c.first_text_s for c in uncached],
            later,
            "%%mlx, prefix cache off",
            "%%mlx, prefix cache on",
            SPEEDUP,
            "≥ 5× faster",
            speedup([c.first_text_s for c in uncached], later) >= 5,
        ),
        Metric(
            "prefix",
            "TTFT, questions 2+: cache vs cold process",
            "s",
            [p["ttft_s"] for p in cold],
            later,
            "fresh mlx_lm generate",
            "%%mlx, prefix cache on",
            SPEEDUP,
            "≥ 10× faster",
            speedup([p["ttft_s"] for p in cold], later) >= 10,
        ),
        Metric(
            "prefix",
            "TTFT, question 1 (cache still empty)",
            "s",
            [uncached[0].first_text_s],
            [cached[0].first_text_s],
            "prefix cache off",
            "prefix cache on",
            RATIO,
            "",
            None,
        ),
    ]
    counts_cells = [c.stats["prompt_tokens"] for c in cached[:n_cold]]
    counts_cold = [p["prompt_tokens"] for p in cold]
    reused = [c.stats["cached_prompt_tokens"] for c in cached]
    result.notes.append(
        f"Prompt tokens: cells {counts_cells}, cold processes {counts_cold} for the same "
        f"questions ({'they match' if counts_cells == counts_cold else 'they DIFFER'}). Tokens "
        f"reused from the cache per question: {reused}. Uncached prefill ran at "
        f"{median([c.stats['prompt_tps'] for c in uncached]):.1f} tokens/s; the cold processes "
        f"spent {median([p['ttft_s'] - p['prefill_s'] for p in cold]):.2f} s on start and load "
        f"and {median([p['prefill_s'] for p in cold]):.2f} s on the prompt."
    )


def _long_prefix(context: Context, result: ScenarioResult, profile) -> None:
    """With a profile: questions about long pasted documents (``profile.long_tokens``
    tokens each), on ``profile.long``; the first question of each document is also
    read by raw mlx-lm in this process (the magic's cache is empty then)."""
    model = profile.long
    n_cached, n_uncached, n_cold = 5, 2, 1
    sizes = tuple(profile.long_tokens)
    result.title = (
        f"Questions about one long pasted document ({', '.join(f'{n:,}' for n in sizes)} "
        f"tokens; {model.label}, `-n 1`, `%config MLXMagics.system_prompt`), in a fresh kernel, "
        f"interleaved: {n_cached} questions with the prefix cache (the default), the first "
        f"{n_uncached} again without it, the first {n_cold} as a fresh `python -m mlx_lm "
        "generate --system-prompt … --prompt …` process, and the first with raw "
        "`mlx_lm.stream_generate` in the benchmark process. Cells are timed from sending the "
        "request to receiving the answer's token (the cold process: from spawn to its "
        "statistics line). Targets: from the second question on, ≥ 5× faster than without the "
        "cache and ≥ 10× faster than the cold process."
    )
    result.setup = {
        "model": model.label,
        "document tokens": ", ".join(map(str, sizes)),
        "cached questions": n_cached,
        "uncached": n_uncached,
        "cold processes": n_cold,
        "prefix cache": "defaults (prefix_cache_gb 1.0, 16 entries)",
    }
    path = Path(model.path)
    baseline = context.text_baseline(path)
    baseline.generate("Hello", 2, raw=True)

    def count(text: str) -> int:
        return len(baseline.tokenizer.encode(text))

    system = SYSTEM_PROMPT.replace("'", "’")
    series = result.series
    series.update(model=model.label, sizes=list(sizes), cached_ttft={}, uncached_ttft={})
    with Kernel(
        context.aliases(),
        f"%mlx load {model.alias}",
        f"%config MLXMagics.system_prompt = '{system}'",
    ) as kernel:
        kernel.generate(cell("mlx", f"-m {model.alias} -n 1", "Hi."))  # warm-up, then forget it
        for size in sizes:
            # The disk tier too: an earlier run's document must not answer question 1.
            kernel.execute("%mlx cache clear --disk")
            document = long_document(count, size - 120)
            cached, uncached, cold = [], [], []
            raw = None
            for number in range(n_cached):
                prompt = f"{document}\n\n{DOCUMENT_QUESTIONS[number % len(DOCUMENT_QUESTIONS)]}"
                kernel.execute("%config MLXMagics.prefix_cache = True")
                with_cache = kernel.generate(cell("mlx", f"-m {model.alias} -n 1", prompt))
                cached.append(with_cache)
                line = (
                    f"{size} tokens, question {number + 1}: cached {ms(with_cache.first_text_s)} "
                    f"({with_cache.stats['cached_prompt_tokens']}/"
                    f"{with_cache.stats['prompt_tokens']} tokens reused)"
                )
                if number == 0:
                    raw = baseline.generate(prompt, 1, system=system)
                    line += f", raw mlx-lm {ms(raw['ttft_s'])}"
                if number < n_uncached:
                    kernel.execute("%config MLXMagics.prefix_cache = False")
                    without = kernel.generate(cell("mlx", f"-m {model.alias} -n 1", prompt))
                    uncached.append(without)
                    line += f", uncached {ms(without.first_text_s)}"
                if number < n_cold:
                    process = cold_process(
                        "mlx_lm",
                        [
                            "--model",
                            path,
                            "--system-prompt",
                            system,
                            "--prompt",
                            prompt,
                            "--max-tokens",
                            "1",
                        ],
                    )
                    cold.append(process)
                    line += f", cold process {process['ttft_s']:.2f} s"
                context.say(line)
            kernel.execute("%config MLXMagics.prefix_cache = True")
            assert raw is not None  # the first question always runs raw mlx-lm too
            _long_prefix_rows(result, size, cached, uncached, cold, raw)
            series["cached_ttft"][str(size)] = [c.first_text_s for c in cached]
            series["uncached_ttft"][str(size)] = [c.first_text_s for c in uncached]


def _long_prefix_rows(result, size, cached, uncached, cold, raw) -> None:
    tag = f"{size // 1024}k-token paste" if size % 1024 == 0 else f"{size}-token paste"
    later = [c.first_text_s for c in cached[1:]]
    plain = [c.first_text_s for c in uncached]
    result.metrics += [
        Metric(
            "prefix",
            f"TTFT, {tag}, questions 2+: cache vs no cache",
            "s",
            plain,
            later,
            "%%mlx, prefix cache off",
            "%%mlx, prefix cache on",
            SPEEDUP,
            "≥ 5× faster",
            speedup(plain, later) >= 5,
        ),
        Metric(
            "prefix",
            f"TTFT, {tag}, questions 2+: cache vs cold process",
            "s",
            [p["ttft_s"] for p in cold],
            later,
            "fresh mlx_lm generate",
            "%%mlx, prefix cache on",
            SPEEDUP,
            "≥ 10× faster",
            speedup([p["ttft_s"] for p in cold], later) >= 10,
        ),
        Metric(
            "prefix",
            f"TTFT, {tag}, question 1 (cache empty) against raw mlx-lm",
            "s",
            [raw["ttft_s"]],
            [cached[0].first_text_s],
            "mlx_lm.stream_generate (in process)",
            "%%mlx (frontend)",
            RATIO,
        ),
        Metric(
            "prefix",
            f"prompt tokens/s, {tag}, no cache: %%mlx against raw mlx-lm",
            "tok/s",
            [raw["prompt_tps"]],
            [c.stats["prompt_tps"] for c in uncached],
            "mlx_lm.stream_generate",
            "%%mlx, prefix cache off",
            RATIO,
        ),
    ]
    reused = [c.stats["cached_prompt_tokens"] for c in cached]
    tokens = sorted({c.stats["prompt_tokens"] for c in cached})
    result.notes.append(
        f"**{tag}:** prompt tokens {tokens} (raw mlx-lm: {raw['prompt_tokens']}; cold process: "
        f"{[p['prompt_tokens'] for p in cold]}); reused from the cache per question: {reused}; "
        f"question 1 read at {cached[0].stats['prompt_tps']:.0f} tokens/s by the magic "
        f"(its first long prompt in this kernel) and {raw['prompt_tps']:.0f} tokens/s by raw "
        f"mlx-lm; without the cache, {median_of([c.stats['prompt_tps'] for c in uncached]):.0f} "
        f"tokens/s; runtime-side TTFT with the cache, questions 2+: "
        f"{', '.join(ms(c.stats['ttft_s']) for c in cached[1:])}; the cold process spent "
        f"{median([p['ttft_s'] - p['prefill_s'] for p in cold]):.2f} s on start and load and "
        f"{median([p['prefill_s'] for p in cold]):.2f} s on the prompt."
    )
