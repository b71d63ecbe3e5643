"""End a thinking block early: ``--think-budget N`` and the "Answer now" button
(runtime thread).

As mlx-vlm's thinking budget does, the block is ended by forcing its closing
tag: a logits processor puts all the probability on the tokens of
``"\\n</think>\\n\\n"``, one per step, and the model goes on to write its
answer after them. The budget counts the tokens generated since the block
opened; the block itself is found in the text (:mod:`mlx_magic.vocabulary.thinking`),
since ``<think>`` is several tokens for many tokenizers.

mlx-lm computes token ``k + 1`` before it hands out token ``k``, so the text
the processor knows lags one token behind the step it decides: a block the
model itself closes on exactly the step the budget runs out gets a second
closing tag in its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Optional

from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.thinking import CLOSE_TAG, OPEN_TAG, THINKING, ThinkingSplitter

if TYPE_CHECKING:
    import mlx.core as mx

    from mlx_magic.vocabulary.values import GenerationRequest

#: What is forced to end a block: the tag on a line of its own, then the
#: blank line these models put before the answer.
CLOSING_TEXT = f"\n{CLOSE_TAG}\n\n"


def thinking_is_possible(tokenizer: Any, request: GenerationRequest, opened: bool) -> bool:
    """Whether a thinking block may come, so the budget processor is worth its
    per-step cost: asked for (``--think``, ``--think-budget``), opened by the
    prompt, or known to the tokenizer (a ``<think>`` token, or its template
    mentions thinking)."""
    if opened or request.think or request.think_budget is not None:
        return True
    if getattr(tokenizer, "has_thinking", False):  # mlx-lm found its think tokens
        return True
    template = getattr(tokenizer, "chat_template", None) or ""
    if OPEN_TAG in template or "enable_thinking" in template:
        return True
    return _has_token(tokenizer, OPEN_TAG)


def _has_token(tokenizer: Any, token: str) -> bool:
    """Whether ``token`` is one token of the vocabulary: looked up, not read
    from ``tokenizer.vocab``, which builds the whole vocabulary as a dict on
    every access (60–100 ms for SmolLM2's 49k tokens on this CPU, on every cell: most of the
    magic's extra time to a new question's first token on a GPU)."""
    convert = getattr(tokenizer, "convert_tokens_to_ids", None)
    if convert is None:
        return False
    found = convert(token)
    return isinstance(found, int) and found != getattr(tokenizer, "unk_token_id", None)


class ThinkingBudget:
    """A logits processor that closes the thinking block after ``budget``
    tokens of it, or as soon as the job asks (:meth:`~mlx_magic.vocabulary.job.Job.end_thinking`).

    Feed it the generation's text through :meth:`watch`.
    """

    def __init__(
        self, tokenizer: Any, job: JobControls, budget: Optional[int], opened: bool
    ) -> None:
        self.job = job
        self.budget = budget
        self.closing_ids = list(tokenizer.encode(CLOSING_TEXT, add_special_tokens=False))
        self.splitter = ThinkingSplitter(opened)
        # The token history's length at the first call: a call's position in
        # the answer is the history's length less this. Counting calls would
        # not do: with --draft, mlx-lm calls processors for the draft's
        # guesses and again for the model's check of each position.
        self._first_length: Optional[int] = None
        self._seen = 0  # tokens whose text the splitter has read
        self._opened_at: Optional[int] = 0 if opened else None
        self._forced_from: Optional[int] = None  # where the closing tokens begin
        #: Why the block was ended early: "budget", "asked", or None.
        self.ended_by: Optional[str] = None

    def watch(self, steps: Generator[Any, None, None]) -> Generator[Any, None, None]:
        """``steps`` (mlx-lm responses) unchanged, their text read on the way."""
        try:
            for response in steps:
                self._read(getattr(response, "text", "") or "")
                yield response
        finally:
            steps.close()

    def _read(self, text: str) -> None:
        self._seen += 1
        self.splitter.feed(text)
        if self._opened_at is None and self.splitter.state == THINKING:
            self._opened_at = self._seen

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        length = int(tokens.shape[-1]) if tokens is not None else 0
        if self._first_length is None:
            self._first_length = length
        position = length - self._first_length  # the index of the token being chosen
        if self._forced_from is None:
            if self.splitter.state != THINKING or self._opened_at is None:
                return logits
            if self.job.thinking_end_requested:
                self.ended_by = "asked"
                self._forced_from = position
            elif self.budget is not None and position - self._opened_at >= self.budget:
                self.ended_by = "budget"
                self._forced_from = self._opened_at + self.budget
            else:
                return logits
        closing = position - self._forced_from
        if not 0 <= closing < len(self.closing_ids):
            return logits
        return _only(logits, self.closing_ids[closing])


def _only(logits: mx.array, token: int) -> mx.array:
    """``logits`` with all the probability on ``token``."""
    import mlx.core as mx

    vocabulary = mx.broadcast_to(mx.arange(logits.shape[-1]), logits.shape)
    chosen = mx.where(
        vocabulary == token, mx.array(0.0, logits.dtype), mx.array(-1e9, logits.dtype)
    )
    # Still computed from the logits (all zeros): MLX computes lazily, and the
    # model's step (its KV cache) must run even where its choice is overruled.
    return chosen + mx.nan_to_num(logits * 0)
