"""Many answers of one model decoded together: continuous batching (runtime thread).

mlx-lm's ``BatchGenerator`` (text models) and mlx-vlm's (vision models) do
continuous batching: up to ``batch_size`` sequences decode in one forward
pass per step, and a finished sequence's slot is taken by the next prompt
waiting. Each sequence keeps its own job, so every answer streams, finishes
and is cancelled on its own, exactly as if it had been generated alone; only
the model's forward passes are shared.

Greedy answers are token for token those of one-at-a-time generation
(tested). Sampled answers share one seed, set once for the whole run: the
run repeats as a whole (same items, same batch size), not answer by answer,
since each draw depends on the other sequences in flight. Jobs with
different seeds or token probabilities take the interleaved path
(:mod:`~mlx_magic.engine.batching` decides, and starts a run of the right kind).

:class:`BatchRun` holds what both kinds share (slots, streaming, cancels,
the finished answer's numbers); :class:`TextBatchRun` here and
:class:`~mlx_magic.engine.vision_batch_generation.VisionBatchRun` feed their
generator.
"""

from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, cast

from mlx_magic.engine.model_cache import WarmModel, config_dict
from mlx_magic.engine.provenance import engine_provenance
from mlx_magic.engine.stepping import Addressed, Steps, usable_top_k
from mlx_magic.engine.text_generation import context_length, fit_history
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.units import gib
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.values import (
    Event,
    Failed,
    Finished,
    FinishReason,
    GenerationStats,
    TokenChunk,
    finish_reason_of,
)

if TYPE_CHECKING:
    from mlx_magic.engine.constrained import SchemaConstraint
    from mlx_magic.engine.prefix_cache import PrefixCache
    from mlx_magic.vocabulary.values import GenerationRequest

#: Most sequences decoded at once when the cell does not say (``--batch-size``).
MAX_AUTO_BATCH = 16
#: Shortest shared beginning of the prompts worth reading once for all of them.
MIN_SHARED_PREFIX = 8
#: The share of the memory budget left after the model that KV caches may use.
KV_SHARE = 0.5


def auto_batch_size(warm: WarmModel, prompt_tokens: int, max_tokens: int, budget_bytes: int) -> int:
    """How many sequences fit: half of the memory budget left beside the
    model's weights, over one sequence's KV cache at its longest (prompt +
    max tokens), capped at :data:`MAX_AUTO_BATCH`. A vision model's language
    model is read from its ``text_config``."""
    config = config_dict(warm.config)
    text_config = config.get("text_config")
    if isinstance(text_config, dict):
        config = {**text_config, **{k: v for k, v in config.items() if v is not None}}
    layers = int(config.get("num_hidden_layers") or 0)
    heads = int(config.get("num_key_value_heads") or config.get("num_attention_heads") or 0)
    hidden = int(config.get("hidden_size") or 0)
    head_dim = int(
        config.get("head_dim") or (hidden // max(1, config.get("num_attention_heads") or 1))
    )
    if not (layers and heads and head_dim):
        return 8
    # Keys and values, float16/bfloat16 (mlx-lm's KV caches follow the model's dtype).
    per_token = 2 * layers * heads * head_dim * 2
    free = max(0, budget_bytes - warm.memory_bytes) * KV_SHARE
    fits = math.floor(free / max(1, per_token * (prompt_tokens + max_tokens)))
    return max(1, min(MAX_AUTO_BATCH, fits))


@dataclass
class Sequence:
    """One answer in flight: its job, the prompt's token ids and what it has generated."""

    job: JobControls
    prompt: list
    detokenizer: Any
    started: float
    cached: int = 0
    image_tokens: int = 0
    tokens: list = field(default_factory=list)
    first_token_at: Optional[float] = None
    #: Whether the generator has begun reading its prompt (``started`` is then when).
    admitted: bool = False


class BatchRun:
    """Jobs of one model, stepped together: :meth:`steps` runs them.

    A subclass makes ``self.generator`` (mlx-lm's or mlx-vlm's
    ``BatchGenerator``), puts the jobs that can run in ``self.waiting``, and
    says how a waiting job is inserted (:meth:`_insert`) and sequences are
    removed (:meth:`_remove`). Events are addressed to a job by its position
    in ``jobs`` (:meth:`_say`).
    """

    def __init__(self, warm: WarmModel, jobs: typing.Sequence[JobControls]):
        self.warm = warm
        self._positions = {id(job): position for position, job in enumerate(jobs)}
        self._events: list[Addressed] = []
        #: The sequences handed to the generator and not finished, by uid: a
        #: finished one leaves, so a step's bookkeeping costs the same for 10
        #: items as for 10,000.
        self.sequences: dict[int, Sequence] = {}
        self.generator: Any = None
        self.batch_size = 1
        #: Sequences handed to the generator beyond ``batch_size``: queued
        #: there, so a slot that frees in a step is taken in that same step.
        self.lookahead = 0
        #: Jobs not inserted yet (with what :meth:`_insert` needs): a slot
        #: that frees takes the next one.
        self.waiting: list[tuple] = []

    def _say(self, job: JobControls, event: Event) -> None:
        self._events.append((self._positions[id(job)], event))

    def _take(self) -> list[Addressed]:
        events, self._events = self._events, []
        return events

    def steps(self) -> Steps:
        """The batch as :data:`~mlx_magic.engine.stepping.Steps`: first what
        preparing it produced (items that failed), then one forward pass per step."""
        if self._events:
            yield self._take()
        while self.step():
            yield self._take()
        yield self._take()

    def _insert(self, chosen: list[tuple]) -> None:
        raise NotImplementedError

    def _remove(self, uids: list[int]) -> None:
        raise NotImplementedError

    def _feed(self) -> None:
        """Insert waiting jobs while the generator holds fewer than
        ``batch_size`` (+ ``lookahead``) unfinished sequences."""
        room = self.batch_size + self.lookahead - len(self.sequences)
        if room <= 0 or not self.waiting or self.generator is None:
            return
        chosen, self.waiting = self.waiting[:room], self.waiting[room:]
        self._insert(chosen)

    def step(self) -> bool:
        """One forward pass for every sequence in flight; ``False`` once all are done."""
        if self.generator is None:
            return False
        self._drop_cancelled()
        self._feed()
        if not self.waiting and not self.sequences:
            self._close()
            return False
        before = time.perf_counter()
        with gpu_lock:
            prompting, responses = self.generator.next()
        now = time.perf_counter()
        self._admitted(prompting, before)
        for response in responses:
            sequence = self.sequences.get(response.uid)
            if sequence is None:  # finished (cancelled) already
                continue
            if sequence.first_token_at is None:
                sequence.first_token_at = now
            if response.finish_reason == "stop":
                # The end-of-sequence token: not part of the answer.
                self._finish(response.uid, "stop")
                continue
            sequence.tokens.append(response.token)
            sequence.detokenizer.add_token(response.token)
            text = sequence.detokenizer.last_segment
            self._say(sequence.job, TokenChunk(text, (response.token,)))
            if response.finish_reason is not None:
                self._finish(response.uid, finish_reason_of(response.finish_reason))
        return True

    def _admitted(self, prompting: list, at: float) -> None:
        """Mark the sequences whose prompt the generator began reading in the
        step that began ``at`` (those inserted ahead start their clock then)."""

    def _drop_cancelled(self) -> None:
        for entry in [entry for entry in self.waiting if entry[0].cancelled]:
            self.waiting.remove(entry)
            self._say(entry[0], Finished(finish_reason="cancelled"))
        cancelled = [uid for uid, sequence in self.sequences.items() if sequence.job.cancelled]
        if cancelled and self.generator is not None:
            with gpu_lock:
                self._remove(cancelled)
            for uid in cancelled:
                self._finish(uid, "cancelled")

    def _finish(self, uid: int, reason: FinishReason) -> None:
        import mlx.core as mx

        sequence = self.sequences.pop(uid)
        sequence.detokenizer.finalize()
        rest = sequence.detokenizer.last_segment
        if rest:
            self._say(sequence.job, TokenChunk(rest, ()))
        now = time.perf_counter()
        first = sequence.first_token_at
        decoding = now - first if first is not None else 0.0
        generated = len(sequence.tokens)
        self._say(
            sequence.job,
            Finished(
                finish_reason=reason,
                stats=GenerationStats(
                    prompt_tokens=len(sequence.prompt),
                    cached_prompt_tokens=sequence.cached,
                    prompt_tps=(
                        len(sequence.prompt) / (first - sequence.started)
                        if first is not None and first > sequence.started
                        else 0.0
                    ),
                    generation_tokens=generated,
                    generation_tps=generated / decoding if decoding > 0 else 0.0,
                    ttft_s=(first - sequence.started) if first is not None else None,
                    peak_memory_gb=gib(mx.get_peak_memory()),
                    image_tokens=sequence.image_tokens,
                    batch_size=self.batch_size,
                    provenance=engine_provenance(self.warm, sequence.prompt),
                ),
            ),
        )

    def _close(self) -> None:
        if self.generator is not None:
            with gpu_lock:
                self.generator.close()
            self.generator = None


class TextBatchRun(BatchRun):
    """Jobs of one text model, with mlx-lm's ``BatchGenerator``."""

    def __init__(
        self,
        warm: WarmModel,
        jobs: typing.Sequence[JobControls],
        *,
        budget_bytes: int,
    ):
        import mlx.core as mx
        from mlx_lm.generate import BatchGenerator
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        super().__init__(warm, jobs)
        tokenizer = warm.tokenizer
        limit = context_length(warm.config)
        prompts, samplers, processors, budgets, ready = [], [], [], [], []
        #: One sampler per setting: mlx-lm samples a batch whose rows share
        #: theirs in one call, else row by row (a call per row and step).
        shared_samplers: dict[tuple, Any] = {}
        for job in jobs:
            request = job.request
            prompt, _ = fit_history(tokenizer, request, limit)
            if limit and len(prompt) >= limit:
                self._say(
                    job,
                    Failed(
                        f"The prompt is {len(prompt):,} tokens; {warm.name} reads at most "
                        f"{limit:,} (its context): shorten it",
                        user_error=True,
                    ),
                )
                continue
            sampling = request.sampling
            try:
                extra = list(extra_logits_processors(warm, request))
            except UserError as error:
                self._say(job, Failed(str(error), user_error=True, error=error))
                continue
            prompts.append(prompt)
            budgets.append(sampling.max_tokens)
            top_k = usable_top_k(sampling.top_k, warm.config)
            setting = (sampling.temperature, sampling.top_p, sampling.min_p, top_k)
            if setting not in shared_samplers:
                shared_samplers[setting] = make_sampler(
                    temp=sampling.temperature,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    top_k=top_k,
                )
            samplers.append(shared_samplers[setting])
            processors.append(
                make_logits_processors(repetition_penalty=sampling.repetition_penalty) + extra
            )
            ready.append(job)
        asked = jobs[0].request.batch_size
        longest = max((len(p) for p in prompts), default=0)
        # No more slots than answers: "batches of N" says what ran together.
        self.batch_size = min(
            max(1, len(ready)),
            asked or auto_batch_size(warm, longest, max(budgets, default=0), budget_bytes),
        )
        self.waiting = list(zip(ready, prompts, budgets, samplers, processors))
        # As many queued in the generator as it may admit at once: it fills a
        # freed slot in the step that freed it, as mlx-lm's batch_generate
        # (which inserts every prompt up front) does; each waits there with
        # its copy of the shared prefix's KV state.
        self.lookahead = self.batch_size
        if not ready:
            return
        self._read_shared_prefix(jobs[0].request, prompts)
        with gpu_lock:
            mx.reset_peak_memory()
            if ready[0].request.sampling.seed is not None:
                mx.random.seed(ready[0].request.sampling.seed)
            self.generator = BatchGenerator(
                warm.model,
                stop_tokens=[[token] for token in tokenizer.eos_token_ids],
                completion_batch_size=self.batch_size,
                prefill_batch_size=min(self.batch_size, 8),
            )
        self._feed()

    def _insert(self, chosen: list[tuple]) -> None:
        """Insert ``chosen``, each from a copy of the longest prefix already read."""
        caches, seen = [], []
        for _, prompt, _, _, _ in chosen:
            cache, done = self._cached(prompt)
            caches.append(cache)
            seen.append(done)
        with gpu_lock:
            uids = self.generator.insert(
                [prompt[len(done) :] for (_, prompt, _, _, _), done in zip(chosen, seen)],
                [entry[2] for entry in chosen],
                caches=caches if all(cache is not None for cache in caches) else None,
                all_tokens=seen,
                samplers=[entry[3] for entry in chosen],
                logits_processors=[entry[4] for entry in chosen],
            )
        now = time.perf_counter()
        for uid, (job, prompt, _, _, _), done in zip(uids, chosen, seen):
            self.sequences[uid] = Sequence(
                job, prompt, self.warm.tokenizer.detokenizer, now, cached=len(done)
            )

    def _remove(self, uids: list[int]) -> None:
        self.generator.remove(uids)

    def _admitted(self, prompting: list, at: float) -> None:
        for response in prompting:  # mlx-lm's PromptProcessingBatch.Response
            sequence = self.sequences.get(response.uid)
            if sequence is not None and not sequence.admitted:
                sequence.started, sequence.admitted = at, True

    def _read_shared_prefix(self, request: GenerationRequest, prompts: list[list[int]]) -> None:
        """Read the prompts' shared beginning once, into the model's prefix cache.

        The prompts of a ``--map`` share their template's beginning (the chat
        template, a system prompt, the instructions): every sequence then
        starts from a copy of its KV state instead of reading it again.
        """
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache

        from mlx_magic.engine.prefix_cache import PrefixCache, warm_prompt_cache

        self.prefix_cache = warm_prompt_cache(self.warm, request.prefix_cache, PrefixCache)
        if self.prefix_cache is None or len(prompts) < 2:
            return
        shared = _common_prefix(prompts)
        if len(shared) < MIN_SHARED_PREFIX:
            return
        _, rest = self.prefix_cache.fetch(self.warm.model, shared)
        if len(rest) > 1:  # not read yet (a fetch always leaves one token)
            with gpu_lock:
                cache = make_prompt_cache(self.warm.model)
                self.warm.model(mx.array(shared)[None], cache=cache)
                mx.eval([entry.state for entry in cache])
            self.prefix_cache.store(shared, cache)

    def _cached(self, prompt: list[int]) -> tuple[Optional[list[Any]], list[int]]:
        """A KV cache holding the longest prefix of ``prompt`` already read, and those tokens."""
        if getattr(self, "prefix_cache", None) is None:
            return None, []
        # Not None: checked above.
        cache, rest = cast("PrefixCache", self.prefix_cache).fetch(self.warm.model, prompt)
        return cache, prompt[: len(prompt) - len(rest)]


def _common_prefix(prompts: list[list[int]]) -> list[int]:
    first = prompts[0]
    length = len(first)
    for prompt in prompts[1:]:
        length = min(length, len(prompt))
        for index in range(length):
            if prompt[index] != first[index]:
                length = index
                break
    return first[:length]


def extra_logits_processors(warm: WarmModel, request: GenerationRequest) -> list[SchemaConstraint]:
    """Logits processors a request brings beyond the sampler's: its ``--schema``."""
    from mlx_magic.engine.constrained import schema_processors

    return schema_processors(warm, request)
