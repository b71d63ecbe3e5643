"""Attention weights, computed again: where one position looked, in one decoder layer.

MLX's fused attention (``mx.fast.scaled_dot_product_attention``) returns its
output, not its weights (ml-explore/mlx#2590), so they are computed again here
from the very queries and keys the model hands it. The model runs its own
``__call__`` once over the prompt and the answer up to the token read, so each
family keeps its own RoPE (Qwen2-VL's M-RoPE over the image's rows and columns),
grouped-query heads, scale and mask. For the length of that call two stand-ins
take part: the chosen decoder layer is watched, and the fused attention, called
from inside it, keeps its queries and keys (after RoPE, before the grouped
heads are repeated), its scale, mask and attention sinks, then does its usual
work. MLX is lazy and only the weights are evaluated, so the layers above the
chosen one and the head, whose output nobody reads, are never computed. Both
stand-ins are removed before the function returns, whatever happens.

Then, for the last position only (one row per head, so the cost is the pass up
to the layer, plus heads × positions × head_dim multiplications): every key
head is repeated for the query heads that share it, scores = q·Kᵀ·scale, the
mask applied as the model gave it ("causal": the last position sees every
earlier one; a boolean mask chooses; an additive one adds), sinks counted in
the denominator where the family has them, and a softmax in float32.

A family that computes its attention by hand (Gemma 2's soft-capped scores)
never calls the fused attention from that layer, and one without decoder layers
at ``model.layers`` (GPT-2) has none to watch: one line says so.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence, cast

from mlx_magic.engine.lens import language_model, model_type_of, token_decoder
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.attention import AttentionMap, ImagePatches

# What attention can be read from, for the one-line refusal of anything else.
_READS = (
    "Attention weights are read from models whose decoder layers (model.layers) call MLX's "
    "fused attention once each: llama, Qwen, SmolLM, Mistral, Phi-3, Gemma 3, Qwen2-VL's "
    "language model, …"
)
# What a vision language model keeps between the calls of one generation
# (Qwen2-VL's positions): put back as it was.
_POSITION_STATE = ("_position_ids", "_rope_deltas")


def attention_map(
    model: Any,
    tokenizer: Any,
    token_ids: Sequence[int],
    *,
    first: int,
    written_id: int,
    layer: Optional[int] = None,
    head: Optional[int] = None,
    vision: Optional[tuple[Any, dict]] = None,
    images: tuple[ImagePatches, ...] = (),
) -> AttentionMap:
    """The attention of one layer at the last position of ``token_ids``: the
    position whose output chose the answer token ``written_id``.

    ``token_ids`` is the prompt (``first`` tokens) followed by the answer's
    tokens before the one read; ``layer`` is 0-based (negative: from the end;
    ``None``: the last); ``head`` is the head the map shows (``None``: the
    mean). ``vision`` is a vision model's ``(pixel_values, the processor's
    other outputs)`` for the prompt's images, whose positions ``images`` says.
    Must run on the thread that owns the model; it is changed for the length
    of the call (under ``gpu_lock``) and put back.

    Raises:
        UserError: a model the weights cannot be read from, or a layer or head
            it does not have (one line each).
        ValueError: ``first`` leaves no prompt token or more than ``token_ids``.
    """
    ids = [int(token) for token in token_ids]
    if not 1 <= first <= len(ids):
        raise ValueError(f"first must be 1 to {len(ids)} (the prompt's length), not {first}")
    language = language_model(model)
    family = model_type_of(language)
    index, layers, weights = last_row_weights(model, ids, layer=layer, vision=vision)
    heads = len(weights)
    if head is not None and not -heads <= head < heads:
        raise UserError(
            f"Layer {index} of this {family} model has {heads} heads (0 to {heads - 1}): "
            f"there is no head {head}"
        )
    text = token_decoder(tokenizer)
    return AttentionMap(
        model_type=family,
        layer=index,
        layers=layers,
        head=None if head is None else head % heads,
        step=len(ids) - first + 1,
        written_id=int(written_id),
        written=text(int(written_id)),
        token_ids=tuple(ids),
        tokens=tuple(text(token) for token in ids),
        prompt_tokens=first,
        weights=tuple(tuple(float(w) for w in row) for row in weights),
        images=images,
    )


def last_row_weights(
    model: Any,
    token_ids: Sequence[int],
    *,
    layer: Optional[int] = None,
    vision: Optional[tuple[Any, dict]] = None,
) -> tuple[int, int, list[list[float]]]:
    """(the layer read, how many layers, heads × positions weights) of the last
    position of ``token_ids`` (see :func:`attention_map`)."""
    import mlx.core as mx
    import mlx.nn as nn

    language = language_model(model)
    family = model_type_of(language)
    inner: Any = language.get("model") if isinstance(language, nn.Module) else None
    if not isinstance(inner, nn.Module):
        raise _unreadable(family)
    layers = inner.get("layers")
    if not (isinstance(layers, list) and layers) or any(one is None for one in layers):
        raise _unreadable(family)  # none, or split over machines (pipeline)
    count = len(layers)
    chosen = count - 1 if layer is None else layer
    if not -count <= chosen < count:
        raise UserError(
            f"This {family} model has {count} decoder layers (0 to {count - 1}; -1 is the "
            f"last): there is no layer {layer}"
        )
    chosen %= count
    fast: Any = mx.fast
    fused = fast.scaled_dot_product_attention
    watched = _Watched(layers[chosen], threading.get_ident())

    def keeping(queries: Any, keys: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
        if watched.inside and threading.get_ident() == watched.owner:
            watched.seen.append((queries, keys, kwargs))
        return fused(queries, keys, values, *args, **kwargs)

    saved = {name: getattr(language, name) for name in _POSITION_STATE if hasattr(language, name)}
    inputs = mx.array([list(token_ids)])
    with gpu_lock:
        # A fresh list, put back below: the model's own list is never changed.
        inner["layers"] = [*layers[:chosen], watched, *layers[chosen + 1 :]]
        fast.scaled_dot_product_attention = keeping
        try:
            _run(model, language, inputs, vision)
        finally:
            fast.scaled_dot_product_attention = fused
            inner["layers"] = layers
            for name, value in saved.items():
                setattr(language, name, value)
        if not watched.done or len(watched.seen) != 1:
            raise _unreadable(family)
        queries, keys, options = watched.seen[0]
        weights = _softmax_of_last_row(queries, keys, options, family)
        mx.eval(weights)
    return chosen, count, [list(row) for row in cast(list, weights.tolist())]


def _run(model: Any, language: Any, inputs: Any, vision: Optional[tuple[Any, dict]]) -> None:
    """The model's own forward pass over ``inputs`` (with the images, for a vision model)."""
    if language is model:
        model(inputs)
        return
    # As mlx-vlm's generation reads a prompt: the input embeddings (the vision
    # tower's features in the image tokens' places) and their positions, then
    # the language model. Its rope_deltas are for later decoding steps only.
    pixel_values, extra = vision if vision is not None else (None, {})
    embedded = model.get_input_embeddings(inputs, pixel_values, **extra)
    more = {
        key: value
        for key, value in embedded.to_dict().items()
        if key not in ("inputs_embeds", "rope_deltas") and value is not None
    }
    language(inputs, inputs_embeds=embedded.inputs_embeds, **{**extra, **more})


def _softmax_of_last_row(queries: Any, keys: Any, options: dict, family: str) -> Any:
    """softmax(q·Kᵀ·scale + mask) of the last query position, per head (heads × keys)."""
    import mlx.core as mx

    scale, mask, sinks = options.get("scale"), options.get("mask"), options.get("sinks")
    if not (isinstance(queries, mx.array) and isinstance(keys, mx.array)):
        raise _unreadable(family)
    if queries.ndim != 4 or keys.ndim != 4 or queries.shape[0] != 1 or keys.shape[0] != 1:
        raise _unreadable(family)
    heads, kv_heads, length = queries.shape[1], keys.shape[1], keys.shape[2]
    if heads % kv_heads or not isinstance(scale, (int, float)):
        raise _unreadable(family)
    query = queries[0, :, -1:, :].astype(mx.float32)  # heads × 1 × head_dim
    # Grouped-query attention: query head h reads key head h // (heads / kv_heads).
    key = mx.repeat(keys[0].astype(mx.float32), heads // kv_heads, axis=0)
    scores = (query @ key.transpose(0, 2, 1))[:, 0, :] * scale  # heads × keys
    if isinstance(mask, str):
        if mask != "causal":
            raise _unreadable(family)
        # The last query is the last position: causally, it sees every key.
    elif isinstance(mask, mx.array):
        row = mx.broadcast_to(mask, (1, heads, queries.shape[2], length))[0, :, -1, :]
        if row.dtype == mx.bool_:
            scores = mx.where(row, scores, mx.array(-mx.inf, dtype=mx.float32))
        else:
            scores = scores + row.astype(mx.float32)
    elif mask is not None:
        raise _unreadable(family)
    if sinks is None:
        return mx.softmax(scores, axis=-1)
    # A sink takes its share of each head's weight and stands for no position.
    sink = mx.broadcast_to(mx.array(sinks).astype(mx.float32).reshape(-1, 1), (heads, 1))
    return mx.softmax(mx.concatenate([sink, scores], axis=-1), axis=-1)[:, 1:]


class _Watched:
    """A decoder layer whose fused attention is kept while it runs (any other
    attribute is the layer's)."""

    def __init__(self, layer: Any, owner: int):
        self.layer = layer
        self.owner = owner
        self.inside = False
        self.done = False
        self.seen: list[tuple[Any, Any, dict]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.inside = True
        try:
            out = self.layer(*args, **kwargs)
        finally:
            self.inside = False
        self.done = True
        return out

    def __getattr__(self, name: str) -> Any:
        # Families look at their layers while calling them (llama's
        # ``use_sliding``, Qwen2-VL's rotary embedding).
        return getattr(self.layer, name)


def _unreadable(family: str) -> UserError:
    return UserError(f"{_READS}; {family} is not one")
