"""Embedding models: loaded with mlx-vlm's own loader, run batched into vectors.

mlx-vlm loads an embedding model with ``load_embedding_model`` (its
``embedding_loader``: Qwen3-Embedding, EmbeddingGemma, BERT, ModernBERT,
XLM-RoBERTa, SigLIP's text tower, Qwen3-VL-Embedding, …), and the model's own
``__call__`` pools and normalises as its config says (a sentence-transformers
folder's ``1_Pooling/config.json``, read by mlx-vlm's ``read_pooling_config``,
else the family's default): what comes back is its ``text_embeds``. This
module only feeds it, as mlx-vlm's ``/v1/embeddings`` server does, with two
differences that make a batch give the vectors each text gets alone:

* texts are padded on the right (a causal model's last-token pooling then sees
  no padding, and its positions start at 0 whatever the batch), and sorted by
  length so a batch pads little; the vectors come back in the given order;
* SigLIP's text tower reads the last position and ignores the mask, as it
  was trained: its texts are padded to its full length, as its processor does.

Images go through the model's processor and chat template as the server's
``_embed_image`` sends one, several to a forward pass (padded together with their
attention mask: Qwen3-VL's position ids skip the padding, so a batch gives each
image's own vector; tested), the largest first. A batch the processor or the
model cannot read is read again an image at a time: an image that fails alone
is a failed row (its vector NaN, its one-line reason in ``Embeddings.failed``),
the others are embedded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mlx_magic.engine.model_cache import WarmModel, text_tokenizer
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.embedding import Embeddings, EmbedRequest

#: The longest text read, in tokens (longer ones are cut, as the server does).
MAX_TEXT_TOKENS = 8192
#: Most images in one forward pass: a megapixel picture is ~1,300 tokens.
MAX_IMAGE_BATCH = 8


def load_embedder(path: str, trust_remote_code: bool) -> tuple[Any, Any, dict]:
    """The model, its processor (or tokenizer) and its config, as mlx-vlm's
    server loads an embedding model. Must run on the runtime thread."""
    from mlx_vlm.embedding_loader import load_embedding_model
    from mlx_vlm.models.pooling import read_pooling_config
    from mlx_vlm.utils import load_config, load_processor

    folder = Path(path)
    model = load_embedding_model(folder)
    processor = load_processor(folder, add_detokenizer=False, trust_remote_code=trust_remote_code)
    model.pooling_config = read_pooling_config(folder)
    return model, processor, load_config(folder)


def embed(warm: WarmModel, asked: EmbedRequest) -> Embeddings:
    """The vectors of ``asked``'s texts or images, in order (runs on the runtime thread).

    Raises:
        UserError: images for a model that reads only text (one line).
    """
    failed: dict[int, str] = {}
    if asked.images:
        vectors, tokens, batches, took = _embed_images(
            warm, list(asked.images), min(asked.batch_size, MAX_IMAGE_BATCH), failed
        )
    else:
        vectors, tokens, batches, took = _embed_texts(warm, list(asked.texts), asked.batch_size)
    embedded = vectors[~np.isnan(vectors).any(axis=1)] if vectors.size else vectors
    return Embeddings(
        vectors=vectors,
        model_type=model_type_of(warm.model) or "embedding",
        pooling=pooling_of(warm.model),
        normalized=bool(
            len(embedded) and np.allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-3)
        ),
        tokens=tokens,
        batches=batches,
        seconds=took,
        failed=tuple(sorted(failed.items())),
    )


def model_type_of(model: Any) -> str:
    """The family's name (``qwen3_embedding``…): the model's, else its config's."""
    named = getattr(model, "model_type", None) or getattr(
        getattr(model, "config", None), "model_type", None
    )
    return str(named or "")


def pooling_of(model: Any) -> str:
    """How ``model`` pools its tokens: its sentence-transformers config's mode,
    else the family's own (read from mlx-vlm's source: SigLIP and
    Qwen3-VL-Embedding take the last token; the others default to their
    ``pooling_config`` fallback)."""
    config = getattr(model, "pooling_config", None) or {}
    mode = config.get("pooling_mode")
    if mode is None:
        for key, name in (
            ("pooling_mode_lasttoken", "lasttoken"),
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_mean_tokens", "mean"),
            ("pooling_mode_max_tokens", "max"),
        ):
            if config.get(key):
                mode = name
                break
    if mode is None:
        mode = _DEFAULT_POOLING.get(model_type_of(model), "the model's own")
    return str(mode)


#: What each family's ``__call__`` falls back to with no ``1_Pooling`` config.
_DEFAULT_POOLING = {
    "qwen3_embedding": "lasttoken",
    "qwen3_vl_embedding": "lasttoken",
    "siglip": "lasttoken",
    "bert": "mean",
    "modernbert": "mean",
    "xlm_roberta": "mean",
    "gemma3_embedding": "mean",
    "lfm2_embedding": "cls",
    "ministral3_embedding": "mean",
}


def _embed_texts(warm: WarmModel, texts: list[str], batch_size: int) -> tuple:
    import mlx.core as mx

    tokenizer = text_tokenizer(warm.tokenizer)
    full = _padded_to_full_length(warm.model)
    limit = full or min(int(getattr(tokenizer, "model_max_length", 512) or 512), MAX_TEXT_TOKENS)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]
    # Longest first: a batch holds texts of about one length (little padding),
    # and the first batch is the largest, so memory peaks at once.
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    vectors: list = [None] * len(texts)
    tokens = batches = 0
    took = 0.0
    side = getattr(tokenizer, "padding_side", "right")
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(order), max(1, batch_size)):
            chosen = order[start : start + max(1, batch_size)]
            encoded = tokenizer(
                [texts[i] for i in chosen],
                padding="max_length" if full else True,
                truncation=True,
                max_length=limit,
                return_tensors="np",
            )
            began = time.perf_counter()
            with gpu_lock:
                out = warm.model(
                    mx.array(encoded["input_ids"]),
                    attention_mask=mx.array(encoded["attention_mask"]),
                )
                rows = np.array(out.text_embeds.astype(mx.float32))
            took += time.perf_counter() - began
            for row, index in zip(rows, chosen):
                vectors[index] = row
            tokens += int(encoded["attention_mask"].sum())
            batches += 1
    finally:
        tokenizer.padding_side = side
    return np.stack(vectors).astype(np.float32), tokens, batches, took


def _padded_to_full_length(model: Any) -> int:
    """SigLIP's text length (it reads the last position, padding included), else 0."""
    if getattr(model, "model_type", "") != "siglip":
        return 0
    config = getattr(getattr(model, "config", None), "text_config", None)
    length = getattr(config, "max_position_embeddings", None)
    if length is None and isinstance(config, dict):
        length = config.get("max_position_embeddings")
    return int(length or 64)


def _embed_images(warm: WarmModel, images: list, batch_size: int, failed: dict) -> tuple:
    """The images' vectors (a NaN row for each that fails, its reason put in ``failed``)."""
    from mlx_vlm.prompt_utils import get_chat_template

    processor = warm.tokenizer
    if getattr(processor, "image_processor", None) is None:
        raise UserError(
            f"'{warm.name}' embeds text only: for images pass an embedding model that sees "
            "them (Qwen3-VL-Embedding) with -m"
        )
    messages = [{"role": "user", "content": [{"type": "image"}]}]
    prompt = get_chat_template(processor, messages, add_generation_prompt=True)
    order = sorted(range(len(images)), key=lambda i: -images[i].width * images[i].height)
    vectors: list = [None] * len(images)
    tokens = batches = 0
    took = 0.0
    for start in range(0, len(order), max(1, batch_size)):
        chosen = order[start : start + max(1, batch_size)]
        try:
            tries = [(chosen, _image_batch(warm, [images[i] for i in chosen], prompt))]
        except Exception:  # one image the processor or model cannot read: find which
            tries = []
            for index in chosen:
                try:
                    tries.append(([index], _image_batch(warm, [images[index]], prompt)))
                except Exception as error:  # this image, not the run: its row says why
                    failed[index] = one_line(error)
        for indices, (rows, used, seconds) in tries:
            for row, index in zip(rows, indices):
                vectors[index] = row
            tokens, batches, took = tokens + used, batches + 1, took + seconds
    width = next((len(row) for row in vectors if row is not None), 0)
    missing = np.full(width, np.nan, dtype=np.float32)
    rows = [missing if row is None else row for row in vectors]
    return np.stack(rows).astype(np.float32), tokens, batches, took


def _image_batch(warm: WarmModel, images: list, prompt: str) -> tuple:
    """One forward pass over ``images``: their vectors, the tokens read, the seconds."""
    import mlx.core as mx
    from mlx_vlm.utils import prepare_inputs

    inputs = prepare_inputs(
        warm.tokenizer,
        images=images,
        prompts=[prompt] * len(images),
        image_token_index=getattr(getattr(warm.model, "config", None), "image_token_index", None),
        padding=True,
    )
    began = time.perf_counter()
    with gpu_lock:
        out = warm.model(**inputs)
        rows = np.array(out.text_embeds.astype(mx.float32))
    mask = inputs.get("attention_mask")
    return rows, int(mask.sum()) if mask is not None else 0, time.perf_counter() - began


def one_line(error: Exception) -> str:
    """An error as one line: its type and the first line of its message."""
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0]}" if first else type(error).__name__
