"""Generate an answer with mlx-vlm, about zero or more images (runtime thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.engine.model_cache import WarmModel, config_dict, text_tokenizer
from mlx_magic.engine.provenance import engine_provenance
from mlx_magic.engine.stepping import Stepper, probability_describer, token_id, usable_top_k
from mlx_magic.engine.text_generation import PendingGeneration
from mlx_magic.engine.video_inputs import check_takes_video, read_clip
from mlx_magic.engine.vision_inputs import VisionInputs, image_patch_ranges, prepare_vision_inputs
from mlx_magic.locking import gpu_lock
from mlx_magic.units import gib
from mlx_magic.vocabulary.job import JobControls
from mlx_magic.vocabulary.values import Event, Finished, GenerationRequest, GenerationStats

if TYPE_CHECKING:
    from mlx_magic.engine.vision_prompt_cache import VisionPromptCaches


def vision_prompt(warm: WarmModel, request: GenerationRequest) -> str:
    """The prompt text with the model's own image tokens, via mlx-vlm's template.

    mlx-vlm knows where each model wants its images (qwen2_vl after the
    text, others before it), so image tokens are never placed by hand.
    """
    from mlx_vlm.prompt_utils import apply_chat_template

    if request.raw:
        return request.prompt
    model_type = config_dict(warm.config)["model_type"]
    if request.has_video:
        return _video_prompt(warm, model_type, request)
    return apply_chat_template(
        warm.tokenizer,
        warm.config,
        conversation_messages(model_type, request),
        num_images=len(request.images),
    )


def _video_prompt(warm: WarmModel, model_type: str, request: GenerationRequest) -> str:
    """A one-turn prompt with the video (and any images) in the user message.

    mlx-vlm's ``apply_chat_template`` puts a video into every message (the
    system prompt too), so the message is built with its ``get_message_json``
    and rendered by the processor's own chat template.
    """
    from mlx_vlm.prompt_utils import get_message_json

    user = get_message_json(
        model_type,
        request.prompt,
        "user",
        num_images=len(request.images),
        video="video",
        fps=request.video_fps,
    )
    messages = [{"role": "system", "content": request.system}] if request.system else []
    return warm.tokenizer.apply_chat_template(
        messages + [user], tokenize=False, add_generation_prompt=True
    )


def conversation_messages(model_type: str, request: GenerationRequest) -> list[dict]:
    """The system prompt, the earlier turns and the cell as chat messages.

    In a conversation each image stays in the user message that sent it, so
    the prompt of a follow-up starts with the previous prompt and answer:
    that is what lets the conversation's KV cache be reused. Models whose
    mlx-vlm layout is a list of parts get explicit image parts in their
    turn; models laid out as text with image tokens get plain text, and
    mlx-vlm puts every image into the last message (correct, without reuse).
    """
    from mlx_vlm.prompt_utils import MODEL_CONFIG, get_message_json

    def user_message(text: str, images: tuple) -> dict:
        if images and model_type.lower() in MODEL_CONFIG:
            message = get_message_json(model_type, text, "user", num_images=len(images))
            if isinstance(message, dict) and isinstance(message.get("content"), list):
                return message
        return {"role": "user", "content": text}

    return request.chat_messages(user_message)


def start_vision(
    warm: WarmModel, job: JobControls, *, started: float, per_step_seed: bool = False
) -> PendingGeneration:
    """Prepare a generation with mlx-vlm, ready to be stepped.

    Args:
        warm: the loaded vision model, its processor (``warm.tokenizer``) and config.
        job: the request and its cancel flag.
        started: ``time.perf_counter()`` when the job started, the origin of
            the time to first token.
    """
    import mlx.core as mx
    from mlx_vlm import stream_generate

    request = job.request
    sampling = request.sampling
    prepared: list[Event] = []
    with gpu_lock:
        prompt = vision_prompt(warm, request)
        mx.reset_peak_memory()
    options: dict[str, Any] = dict(
        max_tokens=sampling.max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=usable_top_k(sampling.top_k, config_dict(warm.config)),
        min_p=sampling.min_p,
        repetition_penalty=sampling.repetition_penalty,
    )
    if sampling.seed is not None:
        # mlx-vlm seeds once at the start; side by side, its draws then
        # depend on the other columns' (exact per-step seeds are for text models).
        options["seed"] = sampling.seed
    from mlx_magic.engine.constrained import schema_processors

    constraint = schema_processors(warm, request)
    if constraint:
        options["logits_processors"] = constraint
    inputs = clip = None
    if request.has_video:
        check_takes_video(warm, request.model.name)
        clip = read_clip(request)
        prepared.append(clip.prepared)
    if request.images or clip is not None:
        with gpu_lock:
            inputs = prepare_vision_inputs(
                warm, prompt, list(request.images), request.model.name, clip
            )
            if inputs.prepared is not None:
                prepared.append(inputs.prepared)
            options.update(inputs.generate_kwargs())
            if clip is None:
                # A video's features are not cached (nor are the images sent with it).
                options.update(_feature_cache_options(warm, inputs, request))
    # A video cell is one turn, read in full: no KV state is kept for it.
    prompt_caches = _prompt_caches(warm, request) if clip is None else None
    # Without a content key per image nothing tells the pictures apart: no reuse then.
    image_keys = (
        request.image_keys if len(request.image_keys) == len(request.images) else (object(),)
    )
    if prompt_caches is not None:
        cache_state = prompt_caches.check_out(request.conversation, image_keys)
        token_ids_before = cache_state.token_ids
        options["prompt_cache_state"] = cache_state
    steps = stream_generate(
        warm.model,
        warm.tokenizer,
        prompt,
        image=list(request.images) or None,
        **options,
    )
    describe = (
        probability_describer(warm.tokenizer, request.top_logprobs)
        if request.top_logprobs
        else None
    )
    stepper = Stepper(steps, job, token_of=token_id, last_token_is_new=False, describe=describe)

    def finish() -> Finished:
        outcome = stepper.outcome
        last = outcome.last
        if prompt_caches is not None:
            prompt_caches.check_in(
                request.conversation, cache_state, token_ids_before, last, image_keys
            )
        return Finished(
            finish_reason=outcome.finish_reason,
            stats=GenerationStats(
                prompt_tokens=last.prompt_tokens if last else 0,
                prompt_tps=last.prompt_tps if last else 0.0,
                generation_tokens=outcome.generated,
                generation_tps=last.generation_tps if last else 0.0,
                ttft_s=(outcome.first_token_at - started) if outcome.first_token_at else None,
                peak_memory_gb=gib(mx.get_peak_memory()),
                cached_prompt_tokens=getattr(last, "cached_tokens", 0) or 0,
                image_tokens=inputs.prepared.image_tokens if inputs and inputs.prepared else 0,
                video_tokens=inputs.prepared.video_tokens if inputs and inputs.prepared else 0,
                provenance=engine_provenance(
                    warm,
                    inputs.input_ids
                    if inputs is not None
                    else list(text_tokenizer(warm.tokenizer).encode(prompt)),
                ),
            ),
        )

    return PendingGeneration(stepper, finish, prepared)


def _prompt_caches(warm: WarmModel, request: GenerationRequest) -> Optional[VisionPromptCaches]:
    """The model's per-conversation KV caches, or ``None`` when turned off."""
    from mlx_magic.engine.prefix_cache import warm_prompt_cache
    from mlx_magic.engine.vision_prompt_cache import VisionPromptCaches

    return warm_prompt_cache(warm, request.prefix_cache, VisionPromptCaches)


def _feature_cache_options(
    warm: WarmModel, inputs: VisionInputs, request: GenerationRequest
) -> dict:
    """Keyword arguments for ``stream_generate`` that reuse cached image features.

    For the models whose features are computed here, each image is cached on
    its own, keyed by its content and by the grid the processor resized it
    to (so a new ``--max-pixels`` is a new entry): adding a fourth image to
    three asked about before encodes only the fourth.
    """
    from mlx_magic.engine.vision_features import (
        feature_cache_mode,
        make_feature_cache,
        tower_features,
    )

    mode = feature_cache_mode(warm.model)
    if mode is None or len(request.image_keys) != len(request.images):
        return {}
    if warm.caches.vision_features is None:
        warm.caches.vision_features = make_feature_cache()
    cache = warm.caches.vision_features
    if mode == "mlx_vlm":
        # mlx-vlm keys the whole set by its processed pixels.
        return {"vision_cache": cache}
    ranges = image_patch_ranges(inputs.extra, len(request.images))
    if ranges is None or inputs.pixel_values is None:
        return {}
    import mlx.core as mx

    parts: list = []
    for key, (start, end, grid_row) in zip(request.image_keys, ranges):
        entry = f"image:{key}:grid{'x'.join(str(int(v)) for v in grid_row.tolist()[0])}"
        features = cache.get(entry)
        if features is None:
            features = tower_features(warm.model, inputs.pixel_values[start:end], grid_row)
            cache.put(entry, features)
        parts.append(features)
    return {"cached_image_features": parts[0] if len(parts) == 1 else mx.concatenate(parts)}
