"""``--draft``: speculative decoding with a small model of the same tokenizer.

mlx-lm's ``stream_generate(draft_model=...)`` does the work: the draft
proposes ``num_draft_tokens`` tokens, the model checks them in one forward
pass and keeps the ones it would have chosen itself, so a greedy answer is the
model's own, token for token; each response says whether its token came from
the draft. This module checks that the pair can work together and measures
what it brought.
"""

from __future__ import annotations

from typing import Optional

from mlx_magic.engine.model_cache import WarmModel
from mlx_magic.errors import UserError

#: Text that tokenizers of different families split differently.
_PROBE = "The café's 12,345 naïve users: <think>ünïcödé</think> — ok?\n\tdef f(x): return x"
#: An answer this long (tokens) gives a speed worth comparing a draft's with.
MIN_TOKENS_FOR_SPEED = 8


def check_draft(warm: WarmModel, draft: WarmModel) -> None:
    """The draft must speak the model's tokens: the same vocabulary and the
    same split of a probe text.

    Raises:
        UserError: one line naming both models, when their tokenizers differ.
    """
    if draft.kind != "text":
        raise UserError(f"--draft {draft.name} is a vision model: a draft is a text model")
    mine, theirs = warm.tokenizer, draft.tokenizer  # mlx-lm's wrappers pass these through
    # len(), not get_vocab(): building the vocabulary as a dict takes tens of
    # milliseconds, and this runs before every --draft answer.
    sizes = (len(mine), len(theirs))
    if sizes[0] != sizes[1] or mine.encode(_PROBE) != theirs.encode(_PROBE):
        raise UserError(
            f"--draft {draft.name}: its tokenizer is not that of {warm.name} ({sizes[1]:,} vs "
            f"{sizes[0]:,} tokens, or another split of the same text): pick a draft of the "
            "same family, e.g. a smaller model of the same series"
        )


def draft_caches(warm: WarmModel, draft: WarmModel) -> list:
    """The prompt cache mlx-lm's speculative decoding takes: the model's
    layers' caches, then the draft's."""
    from mlx_lm.models.cache import make_prompt_cache

    return make_prompt_cache(warm.model) + make_prompt_cache(draft.model)


def remember_speed(
    warm: WarmModel, draft: Optional[WarmModel], prompt: list[int], generated: int, tps: float
) -> tuple[Optional[float], bool]:
    """The speed a ``--draft`` answer is compared with: the same prompt's
    latest answer without a draft when there was one, else the model's latest
    answer without a draft (either long enough to measure).

    Returns (that speed, whether it was the same prompt) for a drafted
    answer; (``None``, False) for one without a draft, whose speed is kept.
    """
    key = hash(tuple(prompt))
    if draft is None:
        if generated >= MIN_TOKENS_FOR_SPEED and tps > 0:
            warm.undrafted_tps = tps
            warm.undrafted_tps_by_prompt[key] = tps
            while len(warm.undrafted_tps_by_prompt) > 64:  # the latest prompts only
                warm.undrafted_tps_by_prompt.pop(next(iter(warm.undrafted_tps_by_prompt)))
        return None, False
    same = warm.undrafted_tps_by_prompt.get(key)
    return (same, True) if same is not None else (warm.undrafted_tps, False)
