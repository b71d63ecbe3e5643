"""Scenario ``warm_vs_cold``: time to first token of a fresh ``mlx_lm`` /
``mlx_vlm generate`` process against a warm cell."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import (
    SHORT_QUESTIONS,
    VISION_PROMPTS,
    Context,
    Kernel,
    cell,
    cold_process,
)
from benchmarks.metrics import (
    DIFFERENCE,
    SPEEDUP,
    Metric,
    ScenarioResult,
    median,
    median_of,
    ms,
    speedup,
)


def warm_vs_cold(context: Context, result: ScenarioResult) -> None:
    """Time to first token: a fresh generate process against a warm cell."""
    result.title = (
        "Time to first token of a fresh `python -m mlx_lm generate` / `python -m mlx_vlm "
        "generate` process (`--max-tokens 1`, timed from spawn to the statistics line it prints "
        "right after the token: Python start, imports, model load, prompt) against a warm cell "
        "(`-n 1`, timed from sending the execute request to receiving the token's text). Each "
        "repetition asks a new question (text) or sends a new random 224×224 image (vision) on "
        "both sides, so nothing is answered from a cache. The prompt token counts printed by the "
        "processes are checked against `_mlx.stats.prompt_tokens`."
    )
    reps = context.reps
    profile = context.profile
    vision = ("tiny VLM", "tiny-vlm", 224)
    if profile is not None:
        reps = profile.cold_reps
        text_models = [(m.label, m.alias, Path(m.path)) for m in profile.warm]
        if profile.vision is not None:
            vision = (profile.vision.label, profile.vision.alias, profile.image_size)
    else:
        text_models = [("tiny llama", "tiny-llama", context.tiny_llama)]
        if not context.quick:
            text_models.insert(0, ("smollm2", "smollm2", context.smollm2))
    result.setup = {
        "reps": reps,
        "text models": ", ".join(t[0] for t in text_models),
        "vision model": vision[0] if profile is not None else "tiny Qwen2-VL",
        "image": f"{vision[2]}×{vision[2]} random PNG",
    }
    loads = [f"%mlx load {model}" for _, model, _ in text_models[:1]] + [f"%mlx load {vision[1]}"]
    with Kernel(context.aliases(), *loads) as kernel:
        for label, model, path in text_models:
            kernel.execute(f"%mlx load {model}")
            kernel.execute("%config MLXMagics.prefix_cache = True")
            kernel.generate(cell("mlx", f"-m {model} -n 1", "Hello."))  # warm: template cached
            cold, warm_cached, warm_plain = [], [], []
            for rep in range(reps):
                question = SHORT_QUESTIONS[rep % len(SHORT_QUESTIONS)]

                def run_cold():
                    return cold_process(
                        "mlx_lm", ["--model", path, "--prompt", question, "--max-tokens", "1"]
                    )

                process = run_cold() if rep % 2 == 0 else None
                kernel.execute("%config MLXMagics.prefix_cache = True")
                cached = kernel.generate(cell("mlx", f"-m {model} -n 1", question))
                kernel.execute("%config MLXMagics.prefix_cache = False")
                plain = kernel.generate(cell("mlx", f"-m {model} -n 1", question))
                if process is None:  # ABBA order
                    process = run_cold()
                cold.append(process)
                warm_cached.append(cached)
                warm_plain.append(plain)
                context.say(
                    f"{label} rep {rep + 1}/{reps}: cold process {process['ttft_s']:.2f} s "
                    f"(prefill {process['prefill_s']:.2f} s), warm {ms(cached.first_text_s)} "
                    f"(prefix cache on) / {ms(plain.first_text_s)} (off)"
                )
            kernel.execute("%config MLXMagics.prefix_cache = True")
            result.metrics += [
                Metric(
                    "warm_vs_cold",
                    f"TTFT, {label}: warm cell (defaults)",
                    "s",
                    [p["ttft_s"] for p in cold],
                    [c.first_text_s for c in warm_cached],
                    "fresh mlx_lm generate",
                    "%%mlx, prefix cache on",
                    SPEEDUP,
                    "≥ 10× faster",
                    speedup([p["ttft_s"] for p in cold], [c.first_text_s for c in warm_cached])
                    >= 10,
                ),
                Metric(
                    "warm_vs_cold",
                    f"TTFT, {label}: warm cell, prefix cache off",
                    "s",
                    [p["ttft_s"] for p in cold],
                    [c.first_text_s for c in warm_plain],
                    "fresh mlx_lm generate",
                    "%%mlx, prefix cache off",
                    SPEEDUP,
                    "≥ 10× faster",
                    speedup([p["ttft_s"] for p in cold], [c.first_text_s for c in warm_plain])
                    >= 10,
                ),
            ]
            if profile is not None and any(m.alias == model and m.small for m in profile.warm):
                visible = [c.first_text_s for c in warm_cached]
                target = profile.warm_ttft_target_s
                result.metrics.append(
                    Metric(
                        "warm_vs_cold",
                        f"TTFT, {label}: warm cell, short question (defaults), absolute",
                        "s",
                        [c.stats["ttft_s"] for c in warm_cached],
                        visible,
                        "runtime side (_mlx.stats.ttft_s)",
                        "request sent → first stdout message",
                        DIFFERENCE,
                        f"≤ {target * 1000:.0f} ms",
                        median_of(visible) <= target,
                    )
                )
            result.notes.append(_cold_note(label, cold, warm_cached, warm_plain))
        _vision_warm_vs_cold(context, kernel, result, reps, vision)


def _cold_note(label, cold, warm_cached, warm_plain) -> str:
    counts_cold = sorted({p["prompt_tokens"] for p in cold})
    counts_warm = sorted({c.stats["prompt_tokens"] for c in warm_plain})
    prefill = median_of([p["prefill_s"] for p in cold])
    startup = median_of([p["ttft_s"] - p["prefill_s"] for p in cold])
    warm_prefill = median([c.stats["ttft_s"] for c in warm_plain])
    cached_tokens = sorted({c.stats["cached_prompt_tokens"] for c in warm_cached})
    cached_ttft = median([c.stats["ttft_s"] for c in warm_cached])
    bound = (startup + prefill) / prefill if prefill else float("inf")
    return (
        f"**{label}:** prompt tokens — processes {counts_cold}, cells {counts_warm} "
        f"({'they match' if counts_cold == counts_warm else 'they DIFFER'}). The cold process "
        f"spends a median {startup:.2f} s on start, imports and load, then {prefill:.2f} s on the "
        f"prompt (its own `Prompt: … tokens-per-sec` line); the warm cell with the prefix cache "
        f"off spends {warm_prefill:.2f} s to its first token (runtime side), so without any "
        f"cache the speed-up cannot exceed (start + prompt) / prompt ≈ {bound:.1f}×. With the "
        f"prefix cache on (the default), {cached_tokens} of the prompt tokens came from the "
        f"cache (the chat template's system prompt, shared by every question) and the first "
        f"token took {cached_ttft:.2f} s (runtime side)."
    )


def _vision_warm_vs_cold(context, kernel, result, reps, vision) -> None:
    label, model, size = vision
    prompt = VISION_PROMPTS[0]
    warmup = context.fresh_image(size)
    kernel.generate(cell("mlx_vision", f"-m {model} -n 1 -i {warmup}", prompt))
    cold, warm = [], []
    for rep in range(reps):
        image = context.fresh_image(size)
        process = cold_process(
            "mlx_vlm",
            [
                "--model",
                context.path_of(model),
                "--image",
                image,
                "--prompt",
                prompt,
                "--max-tokens",
                "1",
                "--temperature",
                "0",
                "--verbose",
            ],
        )
        ours = kernel.generate(cell("mlx_vision", f"-m {model} -n 1 -i {image}", prompt))
        cold.append(process)
        warm.append(ours)
        context.say(
            f"{label} rep {rep + 1}/{reps}: cold process {process['ttft_s']:.2f} s, "
            f"warm {ms(ours.first_text_s)} (runtime {ms(ours.stats['ttft_s'])})"
        )
    result.metrics.append(
        Metric(
            "warm_vs_cold",
            f"TTFT, {label} + new image: warm cell",
            "s",
            [p["ttft_s"] for p in cold],
            [c.first_text_s for c in warm],
            "fresh mlx_vlm generate",
            "%%mlx_vision",
            SPEEDUP,
            "≥ 10× faster",
            speedup([p["ttft_s"] for p in cold], [c.first_text_s for c in warm]) >= 10,
        )
    )
    counts_cold = sorted({p["prompt_tokens"] for p in cold})
    counts_warm = sorted({c.stats["prompt_tokens"] for c in warm})
    result.notes.append(
        f"**{label}:** prompt tokens (image tokens included) — processes {counts_cold}, cells "
        f"{counts_warm} ({'they match: the image was really processed on both sides' if counts_cold == counts_warm else 'they DIFFER'}). "
        f"Cold process: {median([p['ttft_s'] for p in cold]):.2f} s to the first token "
        f"(prompt part {median_of([p['prefill_s'] for p in cold]) * 1000:.0f} ms)."
    )
