"""Generate an answer with mlx-lm (runtime thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Optional, Sequence

from mlx_magic.engine.constrained import schema_processors
from mlx_magic.engine.disk_cache import disk_tier, kv_form
from mlx_magic.engine.drafting import (
    DraftedPromptReading,
    check_draft,
    draft_caches,
    remember_speed,
)
from mlx_magic.engine.kv_estimate import check_kv_fits, kv_arguments, make_kv_cache
from mlx_magic.engine.model_cache import WarmModel
from mlx_magic.engine.provenance import engine_provenance
from mlx_magic.engine.stepping import (
    GPU_PREFILL_STEP,
    Stepper,
    Steps,
    on_gpu,
    prefill_step_size,
    probability_describer,
    token_id,
    usable_top_k,
    watch_prefill,
)
from mlx_magic.engine.thinking_budget import ThinkingBudget, thinking_is_possible
from mlx_magic.engine.tool_calls import (
    check_tool_calling,
    rendered_prompt,
    template_arguments,
    tool_calls_in,
    tool_messages,
)
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.units import gib
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.thinking import prompt_opens_thinking
from mlx_magic.vocabulary.values import (
    Event,
    Finished,
    GenerationRequest,
    GenerationStats,
    Notice,
    Progress,
    ThinkingCanEnd,
    ThinkingOpened,
)

if TYPE_CHECKING:
    import mlx.core as mx

    from mlx_magic.engine.prefix_cache import PrefixCache


def prompt_token_ids(
    tokenizer: Any, request: GenerationRequest, history: Optional[Sequence[tuple]] = None
) -> list[int]:
    """The prompt as token ids: through the chat template unless ``raw``.

    Without a chat template (or with ``raw``) the system prompt and the
    turns so far, if any, are put before the text, separated by blank lines.
    """
    history = request.history if history is None else history
    if request.raw or not getattr(tokenizer, "has_chat_template", False):
        return list(tokenizer.encode(request.plain_prompt(history)))
    messages = request.chat_messages(history=history) + tool_messages(request)
    switches = {} if request.think is None else {"enable_thinking": request.think}
    switches.update(template_arguments(request))  # --tools: the functions offered
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, **switches))


def check_thinking_switch(tokenizer: Any, request: GenerationRequest, model: str) -> None:
    """``--think`` / ``--no-think`` need a chat template with ``enable_thinking``.

    Raises:
        UserError: the model's template has no such switch (or there is no
            template), in one line.
    """
    if request.think is None:
        return
    flag = "--think" if request.think else "--no-think"
    has_template = getattr(tokenizer, "has_chat_template", False)
    template = str(getattr(tokenizer, "chat_template", None) or "") if has_template else ""
    if "enable_thinking" not in template:
        raise UserError(
            f"{flag}: the chat template of {model} has no enable_thinking switch, so whether "
            "it thinks is up to the model: leave the flag out (or use a model such as Qwen3)"
        )


def worth_a_prefix_lookup(prompt_tokens: int, gpu: bool) -> bool:
    """Whether to look for the prompt's beginning in the prefix cache.

    On a GPU a prompt shorter than one prefill step (2,048 tokens) is read
    whole: it takes ~15–90 ms, while resuming a cached beginning runs other
    kernel shapes (a copied, trimmed KV cache at an offset), which the CUDA
    backend compiled on first use for 30–45 s in a fresh process and which
    then cost 80–160 ms more than raw mlx-lm on some new questions (measured
    on an H100, BENCHMARKS.md). Long prompts, where the cache saves seconds,
    still use it; the answer is stored either way. On a CPU it always pays.
    """
    return not gpu or prompt_tokens >= GPU_PREFILL_STEP


def context_length(config: dict) -> Optional[int]:
    """The longest sequence the model was made for, if its config says."""
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_history(
    tokenizer: Any, request: GenerationRequest, limit: Optional[int]
) -> tuple[list[int], int]:
    """The prompt ids with as many of the newest turns as fit the context.

    Returns the ids and how many of the oldest turns had to be dropped.
    """
    history = list(request.history)
    prompt = prompt_token_ids(tokenizer, request, history)
    dropped = 0
    while limit and history and len(prompt) + request.sampling.max_tokens > limit:
        history.pop(0)
        dropped += 1
        prompt = prompt_token_ids(tokenizer, request, history)
    return prompt, dropped


@dataclass
class PendingGeneration:
    """A prepared generation of one answer: :meth:`steps` runs it."""

    stepper: Stepper
    finish: Callable[[], Finished]
    #: What preparing it produced (notices, images read, thinking opened).
    prepared: list[Event]
    #: Work for after the answer has been handed over (writing its state to disk).
    after: list[Callable[[], object]] = field(default_factory=list)
    #: What the answer held, told before its end (``--tools``: the calls in it).
    found: Callable[[], list[Event]] = list

    def steps(self) -> Steps:
        """The generation as :data:`~mlx_magic.engine.stepping.Steps` (its one
        job is at position 0): first what preparing it produced, then one
        token per step; the last step ends with its :class:`Finished`."""
        if self.prepared:
            yield [(0, event) for event in self.prepared]
        while self.stepper.step():
            yield [(0, event) for event in self.stepper.take()]
        try:
            last = self.stepper.take() + self.found()
            yield [(0, event) for event in last] + [(0, self.finish())]
        finally:  # the cell has its answer: this delays only the next one
            for work in self.after:
                with gpu_lock:
                    work()


def start_text(
    warm: WarmModel,
    job: JobControls,
    *,
    report: Callable[[Progress], None],
    started: float,
    per_step_seed: bool = False,
    draft: Optional[WarmModel] = None,
) -> PendingGeneration:
    """Prepare a generation with mlx-lm, ready to be stepped.

    ``per_step_seed`` derives each step's random seed from the request's
    seed and the step number, so that a seeded generation repeats even when
    it takes turns with others (sampling sweeps); a lone generation seeds
    once, as mlx-lm does. ``draft`` (``--draft``) decodes speculatively with
    it (:mod:`~mlx_magic.engine.drafting`); the prompt is then read whole, as
    mlx-lm's speculative decoding has no prefix cache for two models.
    ``report`` is told how far a long prompt has been read, as it is read.
    """
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    request = job.request
    sampling = request.sampling
    prepared: list[Event] = []
    prefix_cache = _prefix_cache_of(warm, request) if draft is None else None
    disk = None
    if prefix_cache is not None:  # keyed by the model's provenance: its key and weights
        disk = disk_tier(engine_provenance(warm, [])["model"], request)
    after: list[Callable[[], object]] = []
    with gpu_lock:
        if draft is not None:
            check_draft(warm, draft)
        check_thinking_switch(warm.tokenizer, request, warm.name)
        check_tool_calling(warm.tokenizer, request, warm.name)
        limit = context_length(warm.config)
        prompt, dropped_turns = fit_history(warm.tokenizer, request, limit)
        prompt += list(request.continue_ids)  # a branch: the answer so far
        if limit and len(prompt) >= limit:
            # Refused before a single token is read: prefilling it would take
            # long and answer nothing sensible.
            what = "The prompt" if not request.history else "This turn alone"
            raise UserError(
                f"{what} is {len(prompt):,} tokens; {warm.name} reads at most {limit:,} "
                "(its context): shorten it, or use a model with a longer context"
            )
        if dropped_turns:
            prepared.append(
                Notice(
                    f"Dropped the {dropped_turns} oldest turn(s) of the conversation: the history "
                    f"no longer fits the {limit}-token context of {warm.name}"
                )
            )
        if prefix_cache is not None and worth_a_prefix_lookup(len(prompt), on_gpu()):
            kv_cache, to_prefill = prefix_cache.fetch(warm.model, prompt, disk, kv_form(request))
        elif draft is not None:
            kv_cache, to_prefill = draft_caches(warm, draft), prompt
        else:
            kv_cache, to_prefill = make_kv_cache(warm.model, request.kv_cache), prompt
        check_kv_fits(warm, request.kv_cache, kv_cache, len(prompt) + sampling.max_tokens)
        kv_args = kv_arguments(warm, request.kv_cache)
        if sampling.seed is not None and not per_step_seed:
            mx.random.seed(sampling.seed)
        mx.reset_peak_memory()
        # Only a model that can think (the template, its tokens, the cell's
        # flags say so) is read as thinking: a raw prompt that happens to
        # end with "<think>" does not turn a plain model's answer into one.
        opened = prompt_opens_thinking(
            warm.tokenizer.decode(prompt[-16:])
        ) and thinking_is_possible(warm.tokenizer, request, opened=False)
    prepared += rendered_prompt(warm.tokenizer, request, prompt)  # --show-prompt
    if opened:
        prepared.append(ThinkingOpened())
    processors = make_logits_processors(repetition_penalty=sampling.repetition_penalty)
    processors += schema_processors(warm, request)  # --schema: only tokens it allows
    budget = None
    if thinking_is_possible(warm.tokenizer, request, opened):
        budget = ThinkingBudget(warm.tokenizer, job, request.think_budget, opened)
        processors.append(budget)
        prepared.append(ThinkingCanEnd())
    sampler = make_sampler(
        temp=sampling.temperature,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        top_k=usable_top_k(sampling.top_k, warm.config),
    )
    if per_step_seed and sampling.seed is not None:
        sampler = seeded_per_step(sampler, sampling.seed)
    step = prefill_step_size(warm.prefill_tps)
    progress = watch_prefill(job, warm.name, report)
    handed_over = to_prefill
    reading: Optional[DraftedPromptReading] = None
    if draft is not None:
        # mlx-lm's speculative path reads the prompt without calling back:
        # read it here, in steps that a cancel can stop, and leave it the last token.
        reading = DraftedPromptReading(warm, draft, kv_cache, to_prefill, step, progress)
        handed_over = reading.left
    steps = _one_after_the_other(
        iter(reading) if reading is not None else iter(()),
        stream_generate(
            warm.model,
            warm.tokenizer,
            mx.array(handed_over),
            prompt_cache=kv_cache,
            max_tokens=sampling.max_tokens,
            sampler=sampler,
            logits_processors=processors,
            prefill_step_size=step,
            prompt_progress_callback=progress,
            draft_model=draft.model if draft is not None else None,
            num_draft_tokens=request.num_draft_tokens,
            **kv_args,
        ),
    )
    if budget is not None:
        steps = budget.watch(steps)
    describe = (
        probability_describer(warm.tokenizer, request.top_logprobs)
        if request.top_logprobs
        else None
    )
    stepper = Stepper(steps, job, token_of=token_id, last_token_is_new=True, describe=describe)

    def finish() -> Finished:
        outcome = stepper.outcome
        last = outcome.last
        generation_tps = last.generation_tps if last else 0.0
        kv_cache_bytes = cache_bytes(kv_cache)
        undrafted_tps, same_prompt = remember_speed(
            warm, draft, prompt, outcome.generated, generation_tps
        )
        if prefix_cache is not None:
            seen = prompt + outcome.token_ids
            if outcome.stop_token is not None:
                seen.append(outcome.stop_token)
            with gpu_lock:
                prefix_cache.store(seen, kv_cache, kv_form(request))
            write = disk.write_later(prompt, seen, kv_cache) if disk is not None else None
            after.extend([write] if write is not None else [])
        prompt_tps = last.prompt_tps if last else 0.0
        if reading is not None and last is not None and last.prompt_tps:
            # mlx-lm timed only the last token: the whole prompt's reading counts.
            prompt_tps = len(to_prefill) / (reading.seconds + last.prompt_tokens / last.prompt_tps)
        if prompt_tps and len(to_prefill) >= 32:
            warm.prefill_tps = prompt_tps  # sizes the next prompt's steps
        return Finished(
            finish_reason=outcome.finish_reason,
            stats=GenerationStats(
                prompt_tokens=len(prompt),
                cached_prompt_tokens=len(prompt) - len(to_prefill),
                dropped_turns=dropped_turns,
                prompt_tps=prompt_tps,
                generation_tokens=outcome.generated,
                generation_tps=generation_tps,
                ttft_s=(outcome.first_token_at - started) if outcome.first_token_at else None,
                peak_memory_gb=gib(mx.get_peak_memory()),
                kv_cache_bytes=kv_cache_bytes,
                kv_cache=request.kv_cache.describe(),
                disk_prompt_tokens=prefix_cache.from_disk if prefix_cache is not None else 0,
                draft_model=draft.name if draft is not None else None,
                drafted_tokens=outcome.drafted,
                undrafted_tps=undrafted_tps,
                undrafted_same_prompt=same_prompt,
                provenance=engine_provenance(warm, prompt),
            ),
        )

    def found() -> list[Event]:
        calls = tool_calls_in(warm.tokenizer, request, stepper.outcome.token_ids)
        return [] if calls is None else [calls]

    return PendingGeneration(stepper, finish, prepared, after, found)


def cache_bytes(kv_cache: list[Any]) -> int:
    """The size of a prompt cache (bytes); 0 for a kind that cannot say."""
    total = 0
    for layer in kv_cache:
        try:
            total += int(layer.nbytes or 0)
        except (AttributeError, NotImplementedError, TypeError):
            return 0
    return total


def seeded_per_step(
    sampler: Callable[[mx.array], mx.array], seed: int
) -> Callable[[mx.array], mx.array]:
    """``sampler`` with the global random seed set from (seed, step) before
    each draw: its choices no longer depend on other generations' draws."""
    import mlx.core as mx

    step = 0

    def sample(logprobs: mx.array) -> mx.array:
        nonlocal step
        mx.random.seed((seed * 1_000_003 + step) % (1 << 63))
        step += 1
        return sampler(logprobs)

    return sample


def _prefix_cache_of(warm: WarmModel, request: GenerationRequest) -> Optional[PrefixCache]:
    """The warm model's prefix cache (made on first use), or ``None`` if off."""
    from mlx_magic.engine.prefix_cache import PrefixCache, warm_prompt_cache

    if request.kv_cache.max_size is not None:
        # A rotating KV cache that has wrapped holds only the newest tokens: it
        # is no longer the state of the tokens it was given, so it can be
        # neither reused for a prompt nor kept for the next one.
        return None
    return warm_prompt_cache(warm, request.prefix_cache, PrefixCache)


def _one_after_the_other(first: Iterator[Any], then: Iterator[Any]) -> Generator[Any, None, None]:
    """``first``'s items, then ``then``'s; closing it closes the one running."""
    yield from first
    yield from then
