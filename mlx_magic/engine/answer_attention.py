"""The attention of an answer already given, at one of its tokens: its prompt made again.

As for the logit lens (:mod:`mlx_magic.engine.answer_lens`), the prompt's ids
are made again on the runtime thread exactly as the generation made them and
checked against the hash the answer's provenance kept. An answer about images
is read with them: the processor runs again on the request's images (the same
resize, the same image tokens, the same pixel values), and the vision tower's
features take the image tokens' places as they did in the generation, so the
weights on image tokens are the model's own and can be mapped back onto the
pictures (:func:`~mlx_magic.engine.vision_inputs.image_token_grids`).
"""

from __future__ import annotations

from typing import Any, Union

from mlx_magic.engine.answer_lens import as_the_model_read_it, prompt_ids, read_lens
from mlx_magic.engine.attention import attention_map
from mlx_magic.engine.embedding import embed
from mlx_magic.engine.model_cache import WarmModel, config_dict
from mlx_magic.engine.vision_generation import vision_prompt
from mlx_magic.engine.vision_inputs import image_token_grids, prepare_vision_inputs
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.attention import AttentionMap, AttentionRequest, unreadable_answer
from mlx_magic.vocabulary.embedding import Embeddings, EmbedRequest
from mlx_magic.vocabulary.lens import LensGrid, LensRequest
from mlx_magic.vocabulary.masks import Segmentation, SegmentRequest


def read_answer(
    warm: WarmModel, asked: Union[LensRequest, AttentionRequest, SegmentRequest, EmbedRequest]
) -> Union[LensGrid, AttentionMap, Segmentation, Embeddings]:
    """What a runtime was asked to read of a warm model (``Runtime.inspect``): an
    answer's lens or attention, a segmenter's masks, or the vectors of texts or images."""
    if isinstance(asked, SegmentRequest):
        from mlx_magic.engine.segmentation import segment

        return segment(warm, asked)
    if isinstance(asked, EmbedRequest):
        return embed(warm, asked)
    if isinstance(asked, AttentionRequest):
        return read_attention(warm, asked)
    return read_lens(warm, asked)


def read_attention(warm: WarmModel, asked: AttentionRequest) -> AttentionMap:
    """Where layer ``asked.layer`` of ``warm`` looked when it wrote answer token
    ``asked.step``, over the prompt (its images included) and the answer before it.

    Runs on the runtime thread.

    Raises:
        UserError: an answer it cannot read (a server's, a video's), a step,
            layer or head out of range, a prompt that is no longer the one the
            model read, or a model family it cannot read (one line each).
    """
    request = asked.request
    problem = unreadable_answer(request)
    if problem is not None:
        raise UserError(problem)
    answer = [int(token) for token in asked.answer_ids]
    if not 1 <= asked.step <= len(answer):
        raise UserError(
            f"%mlx attention STEP: this answer has {len(answer)} tokens (1 to {len(answer)}), "
            f"not {asked.step}"
        )
    with gpu_lock:
        vision: Any = None
        images: tuple = ()
        if warm.kind == "vision" and request.images:
            text = vision_prompt(warm, request)
            inputs = prepare_vision_inputs(warm, text, list(request.images), request.model.name)
            prompt = [int(token) for token in inputs.input_ids.reshape(-1).tolist()]
            vision = (inputs.pixel_values, inputs.extra)
            images = image_token_grids(
                warm.tokenizer, config_dict(warm.config), prompt, inputs.extra, len(request.images)
            )
        else:
            prompt = prompt_ids(warm, request)
        prompt = as_the_model_read_it(prompt, request, answer, asked.expected_sha256, "Attention")
        return attention_map(
            warm.model,
            warm.tokenizer,
            prompt + answer[: asked.step - 1],
            first=len(prompt),
            written_id=answer[asked.step - 1],
            layer=asked.layer,
            head=asked.head,
            vision=vision,
            images=images,
        )
