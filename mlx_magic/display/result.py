"""What a ``%%mlx`` cell leaves behind: the answer, its stats, its tokens."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from mlx_magic.vocabulary.attention import AttentionMap
from mlx_magic.vocabulary.lens import LensGrid
from mlx_magic.vocabulary.tools import ToolCallsFound
from mlx_magic.vocabulary.values import GenerationStats

if TYPE_CHECKING:
    from IPython.lib.pretty import PrettyPrinter


def footer_text(
    stats: GenerationStats, model: str, finish_reason: str = "stop", seed: Optional[int] = None
) -> str:
    """The one-line summary shown under an answer (``seed``: a sampled answer's)."""
    tokens = f"{stats.generation_tokens} tokens"
    if stats.thinking_tokens:
        answer = max(0, stats.generation_tokens - stats.thinking_tokens)
        tokens += f" ({stats.thinking_tokens} thinking + {answer} answer)"
    parts = [
        tokens,
        f"{stats.generation_tps:.1f} tok/s",
        f"prompt {stats.prompt_tokens} tokens @ {stats.prompt_tps:.1f} tok/s",
    ]
    details = []
    if stats.image_tokens or stats.video_tokens:
        visual = [f"{stats.image_tokens} image"] if stats.image_tokens else []
        if stats.video_tokens:
            visual.append(f"{stats.video_tokens} video")
        text = stats.prompt_tokens - stats.image_tokens - stats.video_tokens
        details.append(" + ".join([*visual, f"{text} text"]))
    if stats.cached_prompt_tokens:
        disk = f", {stats.disk_prompt_tokens} from disk" if stats.disk_prompt_tokens else ""
        details.append(f"{stats.cached_prompt_tokens} cached{disk}")
    if details:
        parts[-1] = (
            f"prompt {stats.prompt_tokens} tokens ({', '.join(details)}) "
            f"@ {stats.prompt_tps:.1f} tok/s"
        )
    if stats.ttft_s is not None:
        parts.append(f"first token {stats.ttft_s:.2f} s")
    if stats.peak_memory_gb:
        parts.append(f"peak {stats.peak_memory_gb:.2f} GiB")
    if stats.kv_cache:
        parts.append(stats.kv_cache)
    parts.append(model)
    if stats.draft_model:
        parts.append(draft_text(stats))
    parts.append("warm" if stats.warm else f"cold (loaded in {stats.load_s:.1f} s)")
    if seed is not None:
        parts.append(f"seed {seed}")
    if finish_reason == "length":
        parts.append("stopped at max tokens")
    elif finish_reason == "cancelled":
        parts.insert(0, "■ cancelled")
    elif finish_reason == "cut":
        parts.insert(0, f"✂ stream cut after {stats.generation_tokens} tokens")
    return " · ".join(parts)


def draft_text(stats: GenerationStats) -> str:
    """What the draft model did: its share of the answer's tokens, and the
    speed against the model's last answer without it (when there was one)."""
    share = stats.drafted_tokens / stats.generation_tokens if stats.generation_tokens else 0.0
    text = f"draft {stats.draft_model}: {share:.0%} of tokens"
    if stats.undrafted_tps:
        speedup = stats.generation_tps / stats.undrafted_tps
        against = "this prompt" if stats.undrafted_same_prompt else "its latest answer"
        text += (
            f", {speedup:.2f}× the speed of {against} without it ({stats.undrafted_tps:.1f} tok/s)"
        )
    return text


@dataclass
class TokenInfo:
    """One generated token.

    With ``--probs``, ``logprob`` is its log-probability and ``top`` the most
    likely tokens at that step, as (id, text, logprob), most likely first.
    """

    id: int
    text: str = ""
    logprob: Optional[float] = None
    top: list = field(default_factory=list)
    #: Proposed by the draft model and accepted (``--draft``).
    from_draft: bool = False


@dataclass
class MLXResult:
    """The answer of one cell, stored in ``_mlx`` (and in ``--out NAME``).

    Attributes:
        text: the generated text (the answer, without any thinking).
        thinking: what a reasoning model thought before answering (the text
            between ``<think>`` and ``</think>``, or a server's reasoning).
        prompt: the prompt as the user wrote it.
        model: the model's name.
        finish_reason: ``stop`` (the model ended), ``length`` (max tokens),
            ``cancelled`` (interrupted) or ``cut`` (a server's stream broke).
        stats: a :class:`GenerationStats`.
        tokens: the generated tokens.
    """

    text: str
    prompt: str
    model: str
    finish_reason: str
    stats: GenerationStats = field(default_factory=GenerationStats)
    thinking: str = ""
    tokens: list = field(default_factory=list)
    #: The parsed answer of ``--format json`` (else ``None``).
    data: object = None
    #: Boxes in a vision answer (:class:`~mlx_magic.grounding.Box`), in pixels of
    #: the cell's images as given; ``box.crop()`` cuts one out.
    boxes: list = field(default_factory=list)
    #: Points in a vision answer (:class:`~mlx_magic.grounding.Point`).
    points: list = field(default_factory=list)
    #: Per image of a vision cell: its source, size, the size the model's
    #: processor resized it to and the tokens it became.
    images: list = field(default_factory=list)
    #: How the answer was made (model, versions, prompt hash, sampler, seed...):
    #: also in the saved notebook's output metadata; ``%mlx replay`` reads it.
    provenance: Optional[dict] = field(default=None, repr=False)
    #: The request as sent (kept in the session, for ``%mlx replay``).
    request: object = field(default=None, repr=False, compare=False)
    #: Answers that went another way from one of this answer's tokens
    #: (``%mlx branch``), each an :class:`MLXResult` whose ``branched_at``
    #: says where: (token number, 1-based; the token chosen instead).
    branches: list = field(default_factory=list, repr=False, compare=False)
    branched_at: Optional[tuple] = field(default=None, repr=False, compare=False)
    #: The logit lens of the answer (``%%mlx --lens``, ``%mlx lens``): what each
    #: layer would have predicted at each answer token; ``None`` until read.
    lens: Optional[LensGrid] = field(default=None, repr=False, compare=False)
    #: Where one layer looked when a token of the answer was written
    #: (``--attention``, ``%mlx attention STEP``); ``None`` until read.
    attention: Optional[AttentionMap] = field(default=None, repr=False, compare=False)
    #: Where the answer names a mark sent with ``--marks`` ("mark 3", "[3]"): a
    #: :class:`~mlx_magic.grounding.marks.MarkRef` each, in the order written.
    refs: list = field(default_factory=list, repr=False, compare=False)
    #: The marks the cell sent (``--marks``), and its previews (drawn on live).
    sent_marks: tuple = field(default=(), repr=False, compare=False)
    previews: object = field(default=None, repr=False, compare=False)

    @property
    def marks(self) -> tuple:
        """The marks on this cell's previews, as drawn now (numbered
        :class:`~mlx_magic.grounding.marks.Mark` values, in pixels of the images
        as the cell gave them); for a ``--marks`` cell, those it sent and any
        drawn since."""
        from mlx_magic.grounding.marks import Marks

        shown = getattr(self.previews, "shown_marks", None)
        return Marks(shown if shown is not None else self.sent_marks)

    #: ``--tools``: the calls this answer made (``None`` where none was offered),
    #: and the steps of the whole loop (:class:`~mlx_magic.vocabulary.tools.ToolStep`).
    tool_calls: Optional[ToolCallsFound] = field(default=None, repr=False, compare=False)
    steps: list = field(default_factory=list, repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    @property
    def seed(self) -> Optional[int]:
        """The seed of a sampled answer (drawn when the cell gave none)."""
        sampling = ((self.provenance or {}).get("request") or {}).get("sampling") or {}
        return sampling.get("seed") if sampling.get("temperature") else None

    @property
    def footer(self) -> str:
        return footer_text(self.stats, self.model, self.finish_reason, self.seed)

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        printer.text(f"{self.text}\n[{self.footer}]")

    def _repr_html_(self) -> str:
        return (
            '<div class="mlx-magic-result">'
            f'<div style="white-space: pre-wrap">{html.escape(self.text)}</div>'
            f"{footer_html(self.footer)}</div>"
        )

    def _repr_markdown_(self) -> str:
        return f"{self.text}\n\n*{self.footer}*"


def footer_html(footer: str) -> str:
    """The stats footer as small grey HTML."""
    return (
        '<div class="mlx-magic-footer" style="font-size: 0.85em; opacity: 0.7; '
        f'margin-top: 0.3em">{html.escape(footer)}</div>'
    )


class MLXResults(list):
    """The answers of models side by side (or of a sampling sweep), one
    :class:`MLXResult` per column, in column order."""

    def _repr_pretty_(self, printer: PrettyPrinter, cycle: bool) -> None:
        for result in self:
            printer.text(f"── {result.model} ──\n{result.text}\n[{result.footer}]\n")

    def _repr_html_(self) -> str:
        return columns_html([(result.model, result.text, result.footer) for result in self])


def columns_html(columns: list[tuple[str, str, str]]) -> str:
    """Columns of (title, text, footer) side by side, as static HTML."""
    cells = "".join(
        '<div style="flex: 1 1 0; min-width: 12em">'
        f"<div><b>{html.escape(title)}</b></div>"
        f'<div class="mlx-magic-text" style="white-space: pre-wrap">{html.escape(text)}</div>'
        f"{footer_html(footer)}</div>"
        for title, text, footer in columns
    )
    return f'<div class="mlx-magic-columns" style="display: flex; gap: 1em">{cells}</div>'
