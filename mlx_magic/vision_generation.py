"""Generate an answer with mlx-vlm, about zero or more images (runtime thread)."""

from __future__ import annotations

from .locking import gpu_lock
from .model_cache import WarmModel
from .protocol import Finished, Job
from .stepping import Stepper, probability_describer, token_id
from .text_generation import PendingGeneration


def vision_prompt(warm: WarmModel, request) -> str:
    """The prompt text with the model's own image tokens, via mlx-vlm's template.

    mlx-vlm knows where each model wants its images (qwen2_vl after the
    text, qwen2_5_vl before it), so image tokens are never built by hand.
    """
    from mlx_vlm.prompt_utils import apply_chat_template

    from .text_generation import chat_messages

    if request.raw:
        return request.prompt
    prompt = request.prompt
    if request.system or request.history:
        # mlx-vlm attaches the images to the last user message: this cell's.
        prompt = chat_messages(request, request.history)
    return apply_chat_template(
        warm.tokenizer, warm.config, prompt, num_images=len(request.images)
    )


def generate_vision(warm: WarmModel, job: Job, *, started: float) -> Finished:
    """Stream the answer to ``job.request`` (text and images) as events."""
    return start_vision(warm, job, started=started).run()


def start_vision(warm: WarmModel, job: Job, *, started: float, per_step_seed: bool = False):
    """Prepare a generation with mlx-vlm, ready to be stepped.

    Args:
        warm: the loaded vision model, its processor (``warm.tokenizer``) and config.
        job: the request, its cancel flag, and where events go.
        started: ``time.perf_counter()`` when the job started, the origin of
            the time to first token.
    """
    import mlx.core as mx
    from mlx_vlm import stream_generate

    request = job.request
    sampling = request.sampling
    with gpu_lock:
        prompt = vision_prompt(warm, request)
        mx.reset_peak_memory()
    options = dict(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repetition_penalty=sampling.repetition_penalty,
    )
    if sampling.seed is not None:
        # mlx-vlm seeds once at the start; side by side, its draws then
        # depend on the other columns' (exact per-step seeds are for text models).
        options["seed"] = sampling.seed
    if request.images:
        with gpu_lock:
            options.update(_feature_cache_options(warm, prompt, request))
    steps = stream_generate(
        warm.model,
        warm.tokenizer,
        prompt,
        image=list(request.images) or None,
        **options,
    )
    describe = (probability_describer(warm.tokenizer, request.top_logprobs)
                if request.top_logprobs else None)
    stepper = Stepper(steps, job, token_of=token_id, last_token_is_new=False, describe=describe)

    def finish() -> Finished:
        outcome = stepper.outcome
        last = outcome.last
        return Finished(
            finish_reason=outcome.finish_reason,
            stats={
                "prompt_tokens": last.prompt_tokens if last else 0,
                "prompt_tps": last.prompt_tps if last else 0.0,
                "generation_tokens": outcome.generated,
                "generation_tps": last.generation_tps if last else 0.0,
                "ttft_s": (outcome.first_token_at - started) if outcome.first_token_at else None,
                "peak_memory_gb": mx.get_peak_memory() / 1e9,
                "cached_prompt_tokens": getattr(last, "cached_tokens", 0) or 0,
            },
        )

    return PendingGeneration(stepper, finish)


def _feature_cache_options(warm: WarmModel, prompt: str, request) -> dict:
    """Keyword arguments for ``stream_generate`` that reuse cached image features."""
    from .vision_features import feature_cache_mode, make_feature_cache, tower_features

    mode = feature_cache_mode(warm.model)
    if mode is None or len(request.image_keys) != len(request.images):
        return {}
    cache = warm.extras.setdefault("vision_features", make_feature_cache())
    if mode == "mlx_vlm":
        return {"vision_cache": cache}
    # Keyed by the images' content: the processor's settings are fixed per model.
    key = "images:" + "|".join(request.image_keys)
    features = cache.get(key)
    if features is None:
        features = tower_features(warm.model, warm.tokenizer, prompt, list(request.images))
        cache.put(key, features)
    return {"cached_image_features": features}
