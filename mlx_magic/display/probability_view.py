"""The answer with every token shaded by its probability (``--probs``).

Hovering a token (or focusing it, on touch screens) shows the most likely
tokens at that step. The probabilities are the model's own distribution at
each step (after logits processors such as the repetition penalty, before
temperature, top-p, top-k and min-p choose a token), so the sampler settings
are shown with them.
"""

from __future__ import annotations

import html
import math

from mlx_magic.display.result import MLXResult
from mlx_magic.vocabulary.values import SamplingParams


def sampler_summary(sampling: SamplingParams) -> str:
    parts = [
        f"temperature {sampling.temperature:g}",
        f"top-p {sampling.top_p:g}",
        f"top-k {sampling.top_k or 'off'}",
        f"min-p {sampling.min_p:g}",
    ]
    if sampling.repetition_penalty:
        parts.append(f"repetition penalty {sampling.repetition_penalty:g}")
    if sampling.seed is not None:
        parts.append(f"seed {sampling.seed}")
    return " · ".join(parts)


def probability_bundle(result: MLXResult, sampling: SamplingParams) -> dict:
    """HTML (shaded tokens with their alternatives) and a plain-text table."""
    note = (
        f"Sampler: {sampler_summary(sampling)}. Probabilities are the model's own, "
        "before the sampler's settings apply."
    )
    spans, rows = [], []
    for number, token in enumerate(result.tokens, 1):
        if token.logprob is None:
            continue
        probability = math.exp(token.logprob)
        alternatives = ", ".join(
            f"{text!r} {math.exp(logprob):.1%}" for _, text, logprob in token.top
        )
        drafted = "  (draft)" if token.from_draft else ""
        rows.append(f"{number:>4}  {token.text!r:<18}  {probability:7.1%}  {alternatives}{drafted}")
        # Unlikely tokens glow red; near-certain ones stay almost clear.
        alpha = 0.08 + 0.62 * (1.0 - probability)
        tooltip = f"p = {probability:.1%}\n" + "\n".join(
            f"{text!r}: {math.exp(logprob):.1%}" for _, text, logprob in token.top
        )
        # A token the draft model proposed (--draft) is underlined in blue.
        kind, underline = (
            ("mlx-magic-token mlx-magic-draft", "border-bottom: 2px solid rgb(40, 110, 220); ")
            if token.from_draft
            else ("mlx-magic-token", "")
        )
        if token.from_draft:
            tooltip += "\nproposed by the draft model"
        spans.append(
            f'<span class="{kind}" tabindex="0" data-p="{probability:.4f}" '
            f'title="{html.escape(tooltip, quote=True)}" '
            f'style="background: rgba(220, 60, 40, {alpha:.2f}); border-radius: 3px; '
            f'{underline}white-space: pre-wrap">{html.escape(token.text)}</span>'
        )
    header = f"{'#':>4}  {'token':<18}  {'p':>7}  most likely at this step"
    drafted = sum(token.from_draft for token in result.tokens)
    legend = f"; underlined: the {drafted} tokens the draft model proposed" if drafted else ""
    return {
        "text/plain": "\n".join([note, header, *rows]),
        "text/html": (
            '<div class="mlx-magic-probs"><div style="line-height: 1.9">'
            f'{"".join(spans)}</div><div style="font-size: 0.8em; opacity: 0.7">'
            f"{html.escape(note)} Hover a token for its alternatives"
            f"{legend}.</div></div>"
        ),
    }
