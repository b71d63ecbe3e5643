"""Drive a generation one token step at a time (runtime thread).

Both mlx-lm and mlx-vlm hand out generations as Python generators whose every
``next()`` computes one token. Each step runs under :data:`gpu_lock` and the
job's cancel flag is checked between steps, so a cancel takes effect within
one step and user code holding the lock waits for at most one step.

Every way the engine generates (one answer with mlx-lm or mlx-vlm, or a batch
of them) is a :data:`Steps` iterator: each ``next()`` is one step, and gives
the events it produced, each addressed to its job by position. The engine
never holds a job: it reads :class:`~mlx_magic.vocabulary.job.JobControls`
and hands events back; the runtime puts them in the jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator, Optional, cast

from mlx_magic.engine.model_cache import text_tokenizer
from mlx_magic.errors import CancelledDuringPrompt
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.values import (
    Event,
    FinishReason,
    Progress,
    TokenChunk,
    finish_reason_of,
)

#: An event for the job at this position of the generation's jobs.
Addressed = tuple[int, Event]
#: A generation, stepped: each ``next()`` computes one step (a token of each
#: answer in flight) and gives the events of that step; the last event of
#: each job is its Finished or Failed. The first item may come before any
#: token: the events of preparing the inputs (images read, notices).
Steps = Iterator[list[Addressed]]


#: How long one prefill step may take: a cancel is checked between steps.
PREFILL_STEP_S = 0.5
#: Steps while the model's prompt speed is not known yet (small enough to
#: stop within a second on a slow CPU, large enough to cost little on a GPU).
FIRST_PREFILL_STEP = 16


#: mlx-lm's own prefill step, used as is on a GPU.
GPU_PREFILL_STEP = 2048


def prefill_step_size(tokens_per_s: Optional[float]) -> int:
    """Prompt tokens per prefill step: about :data:`PREFILL_STEP_S` of work on
    a CPU; on a GPU, mlx-lm's own 2048.

    On a GPU every new step shape is compiled: small, changing steps read a
    4,064-token prompt on a 1B model in 37–63 s where 2048-token steps take
    0.1–0.6 s (measured on an H200, docs/gpu.md), and a 2048-token step there
    takes ~45 ms, so a cancel is still seen at once.
    """
    if on_gpu():
        return GPU_PREFILL_STEP
    if not tokens_per_s:
        return FIRST_PREFILL_STEP
    return max(4, min(2048, int(tokens_per_s * PREFILL_STEP_S)))


def on_gpu() -> bool:
    """Whether MLX computes on a GPU (Metal or CUDA) by default."""
    import mlx.core as mx

    return mx.default_device().type == mx.DeviceType.gpu


def usable_top_k(top_k: int, config: dict) -> int:
    """``--top-k`` within the vocabulary: a larger k keeps every token, which
    is what 0 means (mlx-lm's sampler fails on a k beyond the vocabulary)."""
    text_config = config.get("text_config")
    vocab = config.get("vocab_size")
    if vocab is None and isinstance(text_config, dict):
        vocab = text_config.get("vocab_size")
    if isinstance(vocab, int) and top_k >= vocab:
        return 0
    return top_k


#: A prompt read for longer than this shows how far it has come.
PROGRESS_AFTER_S = 1.0


def watch_prefill(
    job: JobControls, model: str, report: Callable[[Progress], None]
) -> Callable[[int, int], None]:
    """A ``prompt_progress_callback``: aborts the prefill of a cancelled job,
    and, once reading takes longer than :data:`PROGRESS_AFTER_S`, reports how
    far the prompt has been read (short prompts change nothing on screen).

    The one event the engine reports as it happens rather than after the step:
    mlx-lm reads a prompt inside one step, and a long one takes minutes."""
    started = time.monotonic()

    def check(processed: int, total: int) -> None:
        if job.cancelled:
            raise CancelledDuringPrompt
        if processed < total and time.monotonic() - started >= PROGRESS_AFTER_S:
            report(Progress(f"{model} is reading the prompt: {processed:,} / {total:,} tokens"))

    return check


@dataclass
class SteppedGeneration:
    """What happened while stepping: the last response and timings."""

    last: Any = None
    finish_reason: FinishReason = "cancelled"
    generated: int = 0
    first_token_at: Optional[float] = None
    token_ids: list = field(default_factory=list)
    # The end-of-sequence token that stopped the generation (not reported
    # as generated, but the model has seen it).
    stop_token: Optional[int] = None
    #: Of ``generated``, how many a draft model proposed (``--draft``).
    drafted: int = 0


class Stepper:
    """Advances one generation token by token.

    Several steppers can take turns (models side by side): each
    :meth:`step` computes one token under :data:`gpu_lock` and returns. Every
    response with text or a token becomes a :class:`TokenChunk` (collected
    until :meth:`take`); the last response of a finished generation carries
    the detokenizer's tail (and, when the model stopped itself, the
    end-of-sequence token, which is not reported as generated).

    Args:
        steps: an mlx-lm or mlx-vlm ``stream_generate`` generator.
        job: the job to watch for cancellation.
        token_of: the generated token id of a response, or ``None``.
        last_token_is_new: whether the last response of a generation that hit
            max tokens brings a token not yet reported (mlx-lm: yes; mlx-vlm
            repeats the previous one).
        describe: if given, ``describe(response, token)`` gives the token's
            probability details (see :class:`TokenChunk`).
    """

    def __init__(
        self,
        steps: Generator[Any, None, None],
        job: JobControls,
        *,
        token_of: Callable[[Any], Optional[int]],
        last_token_is_new: bool,
        describe: Optional[Callable[[Any, int], dict]] = None,
    ):
        self._steps = steps
        self.job = job
        self._token_of = token_of
        self._last_token_is_new = last_token_is_new
        self._describe = describe
        self.outcome = SteppedGeneration()
        self.done = False
        self._events: list[Event] = []

    def take(self) -> list[Event]:
        """The events of the steps since the last call."""
        events, self._events = self._events, []
        return events

    def step(self) -> bool:
        """Compute one token (its events wait for :meth:`take`); false once the generation is over."""
        if self.done:
            return False
        if self.job.cancelled:
            self._close()
            return False
        try:
            with gpu_lock:
                response = next(self._steps, None)
            if response is None:
                self._close()
                return False
            if self._report(response):
                # Let the generator run to its end: mlx-vlm saves its prompt
                # cache state after the last response.
                with gpu_lock:
                    for _ in self._steps:
                        pass
                self._close()
                return False
        except CancelledDuringPrompt:
            self.outcome.finish_reason = "cancelled"
            self._close()
            return False
        except BaseException:
            self._close()
            raise
        return True

    def _report(self, response: Any) -> bool:
        """Report ``response``; true if it was the last one."""
        outcome = self.outcome
        outcome.last = response
        if outcome.first_token_at is None:
            outcome.first_token_at = time.perf_counter()
        finish_reason = getattr(response, "finish_reason", None)
        token = self._token_of(response)
        repeated = finish_reason is not None and (
            finish_reason == "stop" or not self._last_token_is_new
        )
        ids = () if token is None or repeated else (token,)
        if finish_reason == "stop" and self._last_token_is_new:
            outcome.stop_token = token
        outcome.generated += len(ids)
        outcome.token_ids.extend(ids)
        drafted = bool(getattr(response, "from_draft", False)) and bool(ids)
        outcome.drafted += len(ids) if drafted else 0
        details: tuple[dict, ...] = ()
        if self._describe is not None and ids:
            with gpu_lock:
                details = tuple(self._describe(response, token) for token in ids)
        if response.text or ids:
            self._events.append(
                TokenChunk(
                    text=response.text,
                    token_ids=ids,
                    details=details,
                    from_draft=(True,) * len(ids) if drafted else (),
                )
            )
        if finish_reason is not None:
            outcome.finish_reason = finish_reason_of(finish_reason)
            return True
        return False

    def _close(self) -> None:
        self.done = True
        with gpu_lock:
            self._steps.close()


def token_id(response: Any) -> Optional[int]:
    """The token id of an mlx-lm or mlx-vlm response (an int or a 0-d array)."""
    token = getattr(response, "token", None)
    if token is None:
        return None
    return int(token.item()) if hasattr(token, "item") else int(token)


def probability_describer(tokenizer: Any, k: int) -> Callable[[Any, int], dict]:
    """Reads a token's log-probability and the ``k`` most likely tokens from
    the log-probabilities mlx-lm and mlx-vlm return with every step."""
    import mlx.core as mx

    decode = text_tokenizer(tokenizer).decode

    def describe(response: Any, token: int) -> dict:
        logprobs = response.logprobs
        if logprobs.ndim > 1:
            logprobs = logprobs.reshape(-1)
        count = min(k, logprobs.size)
        top = mx.argpartition(-logprobs, kth=count - 1)[:count]
        values = logprobs[top]
        order = mx.argsort(-values)
        # 1-d arrays: tolist() gives lists (its annotation allows scalars too).
        top_ids = cast(list, top[order].tolist())
        top_values = cast(list, values[order].tolist())
        return {
            "logprob": float(logprobs[token].item()),
            "top": [(int(i), decode([int(i)]), float(v)) for i, v in zip(top_ids, top_values)],
        }

    return describe
