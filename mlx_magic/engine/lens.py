"""The logit lens: what every decoder layer would have predicted, from one forward pass.

The model runs its own ``__call__`` once over the prompt and the answer, so each
family keeps exactly its own embedding scale (Gemma), attention masks and sliding
windows, position ids (Qwen2-VL's M-RoPE) and logit scaling or capping (Gemma 2,
Cohere, Granite). Two stand-ins take part for the length of that call: each decoder
layer's output is recorded, and the final norm is handed, instead of the last
hidden state, every layer's output at the positions that generated the answer,
stacked as a batch. The model's head turns that batch into one row of logits per
layer. The stand-ins check that nothing happens between the last layer and the
final norm (else the lens would not read what the model reads) and are removed
before the call returns, whatever happens.

A vision model is read through its language model on the text of the prompt and
the answer only: image placeholder tokens count as their plain token embeddings,
not as the picture, so on a vision answer the lens shows the text's reading.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, cast

from mlx_magic.engine.model_cache import text_tokenizer
from mlx_magic.errors import UserError
from mlx_magic.locking import gpu_lock
from mlx_magic.vocabulary.lens import LensCell, LensGrid

# What the lens can read, for the one-line refusal of anything else.
_READS = (
    "The logit lens reads llama-like models (decoder layers at model.layers, then a final "
    "model.norm and the output head: llama, Qwen, SmolLM, Gemma, Mistral, Phi-3, Qwen2-VL's "
    "language model, …)"
)


def logit_lens(
    model: Any, tokenizer: Any, token_ids: Sequence[int], *, first: int, top_k: int = 5
) -> LensGrid:
    """What each decoder layer predicts at each answer token of ``token_ids``.

    ``token_ids`` is the prompt followed by the answer; ``first`` is the index of
    the answer's first token (the prompt's length). The position before each answer
    token is read: the output of every layer there, put through the model's final
    norm and output head, gives its ``top_k`` tokens and the probability of the
    token that was generated. ``model`` is an mlx-lm model or an mlx-vlm model
    (read through ``model.language_model``, text only: see the module's docstring).

    Must run on the thread that owns the model (MLX streams are thread-local); the
    model is changed for the length of the call (under ``gpu_lock``) and restored.

    Raises:
        UserError: the model is not one the lens can read (one line naming its type).
        ValueError: ``first`` leaves no prompt token or no answer token, or ``top_k`` < 1.
    """
    import mlx.core as mx

    ids = [int(token) for token in token_ids]
    if not 1 <= first < len(ids):
        raise ValueError(
            f"first must leave at least one prompt and one answer token "
            f"(first={first}, {len(ids)} tokens)"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    language = language_model(model)
    model_type = model_type_of(language)
    with gpu_lock:
        logits = _every_layers_logits(language, ids, first, model_type)
        targets = mx.array(ids[first:])[:, None]
        numbers: list[tuple[list, list, list]] = []
        # One layer at a time: a float32 copy of all the logits at once would be
        # layers × tokens × vocabulary × 4 bytes.
        for layer_logits in logits:
            probs = mx.softmax(layer_logits.astype(mx.float32), axis=-1)
            k = min(top_k, probs.shape[-1])
            top = mx.argpartition(-probs, kth=k - 1, axis=-1)[:, :k]
            top_probs = mx.take_along_axis(probs, top, axis=-1)
            order = mx.argsort(-top_probs, axis=-1)
            top = mx.take_along_axis(top, order, axis=-1)
            top_probs = mx.take_along_axis(top_probs, order, axis=-1)
            chosen = mx.take_along_axis(probs, targets, axis=-1)[:, 0]
            mx.eval(top, top_probs, chosen)
            # 2-d, 2-d and 1-d arrays: tolist() gives lists (its annotation allows scalars too).
            numbers.append(
                (
                    cast(list, top.tolist()),
                    cast(list, top_probs.tolist()),
                    cast(list, chosen.tolist()),
                )
            )
    text = token_decoder(tokenizer)
    answer = ids[first:]
    return LensGrid(
        model_type=model_type,
        token_ids=tuple(answer),
        tokens=tuple(text(token) for token in answer),
        rows=tuple(
            tuple(
                LensCell(
                    top_ids=tuple(cell_ids),
                    top_texts=tuple(text(token) for token in cell_ids),
                    top_probs=tuple(float(p) for p in cell_probs),
                    chosen_prob=float(chosen_prob),
                )
                for cell_ids, cell_probs, chosen_prob in zip(top, top_probs, chosen)
            )
            for top, top_probs, chosen in numbers
        ),
    )


def _every_layers_logits(language: Any, ids: list[int], first: int, model_type: str) -> Any:
    """The logits of every layer at positions ``first - 1 … len(ids) - 2``:
    an array of layers × answer tokens × vocabulary, from the model's own call."""
    import mlx.core as mx
    import mlx.nn as nn

    inner: Any = language.get("model") if isinstance(language, nn.Module) else None
    if not isinstance(inner, nn.Module):
        raise _unreadable(model_type)
    layers, norm = inner.get("layers"), inner.get("norm")
    if not (isinstance(layers, list) and layers and isinstance(norm, nn.Module)):
        raise _unreadable(model_type)
    if any(layer is None for layer in layers):  # split over machines (pipeline)
        raise _unreadable(model_type)
    outputs: list[Any] = []
    handed: list[Any] = []
    length = len(ids)

    def every_layer_normed(h: Any) -> Any:
        # Only where the final norm gets the last layer's very output, unchanged,
        # is "the norm and head applied to a layer" what the model itself does.
        if len(outputs) != len(layers) or h is not outputs[-1]:
            raise _unreadable(model_type)
        if any(not isinstance(out, mx.array) or out.shape != h.shape for out in outputs):
            raise _unreadable(model_type)
        if h.ndim != 3 or h.shape[:2] != (1, length):
            raise _unreadable(model_type)
        batch = mx.concatenate([out[:, first - 1 : length - 1] for out in outputs], axis=0)
        handed.append(batch)
        return norm(batch)

    inputs = mx.array([ids])
    # Fresh lists and a plain item of the module's dict, put back below: the
    # original list of layers is never changed.
    inner["layers"] = [_Recorder(layer, outputs) for layer in layers]
    inner["norm"] = _StandIn(every_layer_normed)
    try:
        if hasattr(language, "get_rope_index"):
            # Qwen2-VL's language model keeps the positions of its last prompt
            # (with images) unless it is given some: the text's own, here.
            positions, _ = language.get_rope_index(inputs)
            out = language(inputs, position_ids=positions)
        else:
            out = language(inputs)
    finally:
        inner["layers"] = layers
        inner["norm"] = norm
    logits = getattr(out, "logits", out)
    answer = length - first
    if not handed or not isinstance(logits, mx.array) or logits.shape[:2] != (len(layers), answer):
        raise _unreadable(model_type)
    return logits


class _Recorder:
    """A decoder layer that also keeps what it returns (any other attribute is the layer's)."""

    def __init__(self, layer: Any, outputs: list[Any]):
        self._layer = layer
        self._outputs = outputs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._layer(*args, **kwargs)
        self._outputs.append(out)
        return out

    def __getattr__(self, name: str) -> Any:
        # Families look at their layers while calling them (llama's
        # ``use_sliding``, Qwen2-VL's rotary embedding).
        return getattr(self._layer, name)


class _StandIn:
    """A callable in a module's place, for the length of one call."""

    def __init__(self, function: Callable[[Any], Any]):
        self._function = function

    def __call__(self, h: Any) -> Any:
        return self._function(h)


def language_model(model: Any) -> Any:
    """The part that reads text: the model itself, or a vision model's language model."""
    if getattr(model, "language_model", None) is not None and not hasattr(model, "model"):
        return model.language_model
    return model


def model_type_of(model: Any) -> str:
    for owner in (model, getattr(model, "args", None), getattr(model, "config", None)):
        name = getattr(owner, "model_type", None)
        if isinstance(name, str) and name:
            return name
    return type(model).__module__.rsplit(".", 1)[-1] or type(model).__name__


def _unreadable(model_type: str) -> UserError:
    return UserError(f"{_READS}; {model_type} is not one")


def token_decoder(tokenizer: Any) -> Callable[[int], str]:
    """Token id → its text, one token at a time, remembered (ids repeat across layers)."""
    decode = text_tokenizer(tokenizer).decode
    known: dict[int, str] = {}

    def text(token: int) -> str:
        if token not in known:
            known[token] = decode([token])
        return known[token]

    return text
