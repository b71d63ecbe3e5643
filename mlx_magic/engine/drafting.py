"""``--draft``: speculative decoding with a small model of the same tokenizer.

mlx-lm's ``stream_generate(draft_model=...)`` does the work: the draft
proposes ``num_draft_tokens`` tokens, the model checks them in one forward
pass and keeps the ones it would have chosen itself, so a greedy answer is the
model's own, token for token; each response says whether its token came from
the draft. This module checks that the pair can work together and measures
what it brought.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Optional

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


@dataclass
class DraftedPromptReading:
    """All but the last of ``tokens`` read into the model's and the draft's
    caches (``caches`` as :func:`draft_caches` made them), ``step`` tokens at a
    time, calling ``progress(read, total)`` before each step: it raises to stop
    (a cancel), and shows how far the reading has come.

    mlx-lm's speculative path drops ``prompt_progress_callback`` and reads the
    prompt in one go, so a long prompt could not be stopped (318 s seen); what
    is left for it is the last token (:attr:`left`). Iterating yields nothing:
    the reading happens in the first step of the generation it is chained
    before, under the GPU lock, as mlx-lm's own prefill does.
    """

    warm: WarmModel
    draft: WarmModel
    caches: list
    tokens: list[int]
    step: int
    progress: Callable[[int, int], None]
    #: How long the reading took (s), once it is done.
    seconds: float = 0.0

    @property
    def left(self) -> list[int]:
        """What mlx-lm is handed: the last token."""
        return self.tokens[-1:]

    def __iter__(self) -> Generator[Any, None, None]:
        import mlx.core as mx

        started = time.perf_counter()
        split = len(self.caches) - len(self.draft.model.layers)
        model_caches, draft_caches_ = self.caches[:split], self.caches[split:]
        total, read = len(self.tokens), 0
        while total - read > 1:
            self.progress(read, total)
            chunk = mx.array(self.tokens[read : min(read + self.step, total - 1)])[None]
            self.warm.model(chunk, cache=model_caches)
            self.draft.model(chunk, cache=draft_caches_)
            mx.eval([c.state for c in self.caches])
            read += chunk.shape[1]
        self.progress(read, total)
        self.seconds = time.perf_counter() - started
        return
        yield  # a generator


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
