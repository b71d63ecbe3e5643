"""Scenario ``prefix``: time to first token of questions about the same pasted
paragraph, with the prefix cache, without it, and in fresh processes."""

from __future__ import annotations

from mlx_magic.bench.harness import (
    PARAGRAPH,
    QUESTIONS,
    SYSTEM_PROMPT,
    Context,
    Kernel,
    cell,
    cold_process,
)
from mlx_magic.bench.metrics import RATIO, SPEEDUP, Metric, ScenarioResult, median, speedup


def prefix(context: Context, result: ScenarioResult) -> None:
    """TTFT for questions about the same pasted paragraph, with and without the cache."""
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
