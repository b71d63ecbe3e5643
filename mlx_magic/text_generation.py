"""Generate an answer with mlx-lm, one token step at a time (runtime thread).

Each step runs under :data:`mlx_magic.gpu_lock` and is followed by a check of
the job's cancel flag, so a cancel takes effect within one token step and
user code holding the lock waits for at most one step.
"""

from __future__ import annotations

import time
from typing import Callable

from .locking import gpu_lock
from .model_cache import WarmModel
from .protocol import Finished, GenerationRequest, Job, TokenChunk


class _CancelledDuringPrompt(Exception):
    """Raised from mlx-lm's prompt progress callback to stop a long prefill."""


def prompt_token_ids(tokenizer, request: GenerationRequest) -> list[int]:
    """The prompt as token ids: through the chat template unless ``raw``.

    Without a chat template (or with ``raw``) the system prompt, if any, is
    put before the text, separated by a blank line.
    """
    if request.raw or not getattr(tokenizer, "has_chat_template", False):
        text = request.prompt
        if request.system:
            text = f"{request.system}\n\n{text}"
        return list(tokenizer.encode(text))
    messages = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def generate_text(
    warm: WarmModel, job: Job, *, started: float, emit: Callable = None
) -> Finished:
    """Stream the answer to ``job.request`` as :class:`TokenChunk` events.

    Args:
        warm: the loaded text model and tokenizer.
        job: the request, its cancel flag, and where events go.
        started: ``time.perf_counter()`` when the job started (after loading),
            the origin of the time to first token.

    Returns:
        The :class:`Finished` event (not yet emitted), with the stats.
    """
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    emit = emit or job.emit
    request = job.request
    sampling = request.sampling
    with gpu_lock:
        prompt = prompt_token_ids(warm.tokenizer, request)
        if sampling.seed is not None:
            mx.random.seed(sampling.seed)
        mx.reset_peak_memory()
    sampler = make_sampler(
        temp=sampling.temperature,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        top_k=sampling.top_k,
    )
    processors = make_logits_processors(repetition_penalty=sampling.repetition_penalty)

    def stop_long_prompt(processed: int, total: int) -> None:
        if job.cancelled:
            raise _CancelledDuringPrompt

    steps = stream_generate(
        warm.model,
        warm.tokenizer,
        mx.array(prompt),
        max_tokens=sampling.max_tokens,
        sampler=sampler,
        logits_processors=processors,
        prompt_progress_callback=stop_long_prompt,
    )
    last = None
    first_token_at = None
    finish_reason = "cancelled"
    generated = 0
    try:
        while not job.cancelled:
            with gpu_lock:
                response = next(steps, None)
            if response is None:
                break
            last = response
            if first_token_at is None:
                first_token_at = time.perf_counter()
            if response.finish_reason is not None:
                finish_reason = response.finish_reason
                # The last response carries the detokenizer's tail; its token
                # is the end-of-sequence token when the model stopped itself.
                ids = () if finish_reason == "stop" else (response.token,)
            else:
                ids = (response.token,)
            generated += len(ids)
            if response.text or ids:
                emit(TokenChunk(text=response.text, token_ids=ids))
            if response.finish_reason is not None:
                break
    except _CancelledDuringPrompt:
        finish_reason = "cancelled"
    finally:
        with gpu_lock:
            steps.close()

    stats = {
        "prompt_tokens": last.prompt_tokens if last else len(prompt),
        "prompt_tps": last.prompt_tps if last else 0.0,
        "generation_tokens": generated,
        "generation_tps": last.generation_tps if last else 0.0,
        "ttft_s": (first_token_at - started) if first_token_at else None,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
    }
    return Finished(finish_reason=finish_reason, stats=stats)
