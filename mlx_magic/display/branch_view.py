"""An answer and a branch of it, side by side, each with its own probabilities."""

from __future__ import annotations

import html

from mlx_magic.display.probability_view import probability_bundle
from mlx_magic.display.result import MLXResult, footer_html
from mlx_magic.vocabulary.values import SamplingParams


def branch_title(original: MLXResult, step: int, chosen: str) -> str:
    """``branch at token 6: ' London' instead of ' Paris'``."""
    was = original.tokens[step - 1].text if 0 < step <= len(original.tokens) else ""
    return f"branch at token {step}: {chosen!r} instead of {was!r}"


def branch_bundle(original: MLXResult, branch: MLXResult) -> dict:
    """Both answers' probability views in two columns (HTML), and as text."""
    sampling = getattr(branch.request, "sampling", None) or SamplingParams()
    step, chosen = branch.branched_at or (0, "")
    columns = [("original", original), (branch_title(original, step, chosen), branch)]
    views = [(title, probability_bundle(result, sampling), result) for title, result in columns]
    cells = "".join(
        '<div style="flex: 1 1 0; min-width: 14em">'
        f"<div><b>{html.escape(title)}</b></div>{bundle['text/html']}"
        f"{footer_html(result.footer)}</div>"
        for title, bundle, result in views
    )
    return {
        "text/plain": "\n\n".join(
            f"── {title} ──\n{result.text}\n[{result.footer}]" for title, _, result in views
        ),
        "text/html": (
            f'<div class="mlx-magic-columns mlx-magic-branch" style="display: flex; gap: 1em">'
            f"{cells}</div>"
        ),
    }
