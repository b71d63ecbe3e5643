"""Scenario ``conversation``: time to first token per turn, ``--chat`` with the
prefix cache against rebuilding the whole history every turn."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import (
    CONVERSATION,
    DOCUMENT_QUESTIONS,
    Context,
    Kernel,
    cell,
    long_document,
)
from benchmarks.metrics import RATIO, SPEEDUP, Metric, ScenarioResult, ms


def conversation(context: Context, result: ScenarioResult) -> None:
    """TTFT per turn: --chat with the prefix cache against rebuilding the history."""
    if context.profile is not None and context.profile.long is not None:
        _long_conversation(context, result, context.profile)
        return
    if context.quick:
        model, label, turns, max_tokens = "tiny-llama", "tiny llama", 3, 6
    else:
        model, label, turns, max_tokens = "smollm2", "smollm2", 8, 6
    result.title = (
        f"A {turns}-turn conversation (`%%mlx --chat NAME -n {max_tokens}`, {label}), run twice "
        "side by side in one kernel, turn by turn: once with the prefix cache off (every turn "
        "prefills the whole history: the baseline) and once with it on (every turn prefills only "
        "what is new). TTFT is `_mlx.stats.ttft_s`. Target: with reuse, turn "
        f"{turns}'s TTFT ≤ 1.3 × turn 1's."
    )
    result.setup = {"model": label, "turns": turns, "answer tokens": max_tokens, "reps": 1}
    rebuild, reuse = [], []
    with Kernel(context.aliases(), f"%mlx load {model}") as kernel:
        kernel.generate(cell("mlx", f"-m {model} -n 1", "Hi."))  # warm-up, then forget it
        kernel.execute("%mlx cache clear")
        for turn in range(turns):
            text = CONVERSATION[turn]
            kernel.execute("%config MLXMagics.prefix_cache = False")
            plain = kernel.generate(
                cell("mlx", f"-m {model} -n {max_tokens} --chat rebuild", text),
                cell_id=f"rebuild-{turn}",
            )
            kernel.execute("%config MLXMagics.prefix_cache = True")
            cached = kernel.generate(
                cell("mlx", f"-m {model} -n {max_tokens} --chat reuse", text),
                cell_id=f"reuse-{turn}",
            )
            rebuild.append(plain.stats)
            reuse.append(cached.stats)
            context.say(
                f"turn {turn + 1}/{turns}: rebuild {plain.stats['ttft_s']:.2f} s "
                f"({plain.stats['prompt_tokens']} prompt tokens), reuse "
                f"{cached.stats['ttft_s']:.2f} s ({cached.stats['prompt_tokens']} tokens, "
                f"{cached.stats['cached_prompt_tokens']} cached)"
            )
    result.series.update(
        model=label,
        rebuild_ttft=[s["ttft_s"] for s in rebuild],
        reuse_ttft=[s["ttft_s"] for s in reuse],
        rebuild_prompt=[s["prompt_tokens"] for s in rebuild],
        reuse_prompt=[s["prompt_tokens"] for s in reuse],
        reuse_cached=[s["cached_prompt_tokens"] for s in reuse],
    )
    last = turns
    result.metrics += [
        Metric(
            "conversation",
            f"TTFT turn {last} ÷ turn 1, with reuse",
            "s",
            [reuse[0]["ttft_s"]],
            [reuse[-1]["ttft_s"]],
            "turn 1",
            f"turn {last}",
            RATIO,
            "≤ 1.3×",
            reuse[-1]["ttft_s"] <= 1.3 * reuse[0]["ttft_s"],
        ),
        Metric(
            "conversation",
            f"TTFT turn {last} ÷ turn 1, rebuilding the history",
            "s",
            [rebuild[0]["ttft_s"]],
            [rebuild[-1]["ttft_s"]],
            "turn 1",
            f"turn {last}",
            RATIO,
            "",
            None,
        ),
        Metric(
            "conversation",
            f"TTFT turn {last}: rebuild vs reuse",
            "s",
            [rebuild[-1]["ttft_s"]],
            [reuse[-1]["ttft_s"]],
            "prefix cache off",
            "--chat, prefix cache on",
            SPEEDUP,
            "",
            None,
        ),
    ]
    same_prompts = [s["prompt_tokens"] for s in rebuild] == [s["prompt_tokens"] for s in reuse]
    result.notes.append(
        "Prompt tokens per turn: "
        + ", ".join(str(s["prompt_tokens"]) for s in reuse)
        + f" (the same in both runs: {'yes' if same_prompts else 'NO — the answers differed'}); "
        "tokens taken from the prefix cache with reuse: "
        + ", ".join(str(s["cached_prompt_tokens"]) for s in reuse)
        + ". One repetition: each turn is a measurement, and the rebuild run costs minutes on "
        "this CPU (its TTFT grows with the history)."
    )


def _long_conversation(context: Context, result: ScenarioResult, profile) -> None:
    """With a profile: conversations whose first turn pastes a long document
    (``profile.long_tokens`` tokens), then asks short questions about it."""
    model = profile.long
    turns, max_tokens = 5, 16
    sizes = tuple(profile.long_tokens)
    result.title = (
        f"{turns}-turn conversations (`%%mlx --chat NAME -n {max_tokens}`, {model.label}) whose "
        f"first turn pastes a long document ({', '.join(f'{n:,}' for n in sizes)} tokens) and "
        "asks about it; every later turn asks a short question. Each is run twice side by "
        "side in one kernel, turn by turn: with the prefix cache off (every turn prefills the "
        "whole history: the baseline) and on (every turn prefills only what is new). TTFT is "
        f"`_mlx.stats.ttft_s`. Target: with reuse, turn {turns}'s TTFT ≤ 1.3 × turn 2's (turn 1 "
        "reads the document either way; the follow-ups are what the cache is for)."
    )
    result.setup = {
        "model": model.label,
        "document tokens": ", ".join(map(str, sizes)),
        "turns": turns,
        "answer tokens": max_tokens,
    }
    baseline = context.text_baseline(Path(model.path))

    def count(text: str) -> int:
        return len(baseline.tokenizer.encode(text))

    series = result.series
    series.update(model=model.label, rebuild_ttft=[], reuse_ttft=[], sizes=list(sizes))
    with Kernel(context.aliases(), f"%mlx load {model.alias}") as kernel:
        kernel.generate(cell("mlx", f"-m {model.alias} -n 1", "Hi."))  # warm-up
        for size in sizes:
            kernel.execute("%mlx cache clear")
            document = long_document(count, size - 400)
            texts = [f"{document}\n\n{DOCUMENT_QUESTIONS[2]}"] + [
                DOCUMENT_QUESTIONS[(i + 3) % len(DOCUMENT_QUESTIONS)] for i in range(turns - 1)
            ]
            rebuild, reuse = [], []
            for turn, text in enumerate(texts):
                kernel.execute("%config MLXMagics.prefix_cache = False")
                plain = kernel.generate(
                    cell("mlx", f"-m {model.alias} -n {max_tokens} --chat rebuild{size}", text),
                    cell_id=f"rebuild-{size}-{turn}",
                )
                kernel.execute("%config MLXMagics.prefix_cache = True")
                cached = kernel.generate(
                    cell("mlx", f"-m {model.alias} -n {max_tokens} --chat reuse{size}", text),
                    cell_id=f"reuse-{size}-{turn}",
                )
                rebuild.append(plain.stats)
                reuse.append(cached.stats)
                context.say(
                    f"{size} tokens, turn {turn + 1}/{turns}: rebuild {ms(plain.stats['ttft_s'])} "
                    f"({plain.stats['prompt_tokens']} prompt tokens), reuse "
                    f"{ms(cached.stats['ttft_s'])} ({cached.stats['cached_prompt_tokens']} cached)"
                )
            tag = f"{size // 1024}k-token paste" if size % 1024 == 0 else f"{size}-token paste"
            series["rebuild_ttft"] = [s["ttft_s"] for s in rebuild]
            series["reuse_ttft"] = [s["ttft_s"] for s in reuse]
            result.metrics += [
                Metric(
                    "conversation",
                    f"TTFT turn {turns} ÷ turn 2, {tag}, with reuse",
                    "s",
                    [reuse[1]["ttft_s"]],
                    [reuse[-1]["ttft_s"]],
                    "turn 2",
                    f"turn {turns}",
                    RATIO,
                    "≤ 1.3×",
                    reuse[-1]["ttft_s"] <= 1.3 * reuse[1]["ttft_s"],
                ),
                Metric(
                    "conversation",
                    f"TTFT turns 2–{turns}, {tag}: rebuild vs reuse",
                    "s",
                    [s["ttft_s"] for s in rebuild[1:]],
                    [s["ttft_s"] for s in reuse[1:]],
                    "prefix cache off",
                    "--chat, prefix cache on",
                    SPEEDUP,
                    "",
                    None,
                ),
                Metric(
                    "conversation",
                    f"TTFT turn 1, {tag} (the document is read either way)",
                    "s",
                    [rebuild[0]["ttft_s"]],
                    [reuse[0]["ttft_s"]],
                    "prefix cache off",
                    "prefix cache on",
                    RATIO,
                    "",
                    None,
                ),
            ]
            result.notes.append(
                f"**{tag}:** prompt tokens per turn: "
                + ", ".join(str(s["prompt_tokens"]) for s in reuse)
                + "; from the prefix cache with reuse: "
                + ", ".join(str(s["cached_prompt_tokens"]) for s in reuse)
                + "; TTFT per turn, rebuild: "
                + ", ".join(ms(s["ttft_s"]) for s in rebuild)
                + "; reuse: "
                + ", ".join(ms(s["ttft_s"]) for s in reuse)
                + "."
            )
