"""How much memory a prompt's KV cache will take, known before it is read,
and the arguments that give mlx-lm's other KV caches (``--max-kv-size``,
``--kv-bits``).

The estimate walks the cache the generation is about to use (mlx-lm's
``make_prompt_cache``: the model's own ``make_cache`` where it has one):
a ``KVCache`` layer keeps every token of the context (the prompt and the
answer's ``max_tokens``), a ``RotatingKVCache`` (a sliding-window layer, or
``--max-kv-size``) at most its size, other kinds (a recurrent layer's state)
a fixed amount, not counted. Each kept token costs keys and values:
2 × KV heads × head dimension × the model's bytes per number, or with
``--kv-bits`` the bits plus a scale and a bias per group of 64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from mlx_magic.engine.fit import FREE_MEMORY, gib_text, machine_room
from mlx_magic.errors import UserError
from mlx_magic.vocabulary.caching import KV_GROUP_SIZE, KVCacheSettings

if TYPE_CHECKING:
    from mlx_magic.engine.model_cache import WarmModel


def make_kv_cache(model: Any, settings: KVCacheSettings) -> list[Any]:
    """A fresh KV cache for ``model`` in the form ``settings`` asks for.

    mlx-lm's ``make_prompt_cache(model, max_kv_size)`` gives a rotating cache
    only to models without a ``make_cache`` of their own, and most have one
    now (llama's chooses per layer between a plain and a sliding-window
    cache), so ``--max-kv-size`` would be ignored: here each plain
    ``KVCache`` layer becomes mlx-lm's ``RotatingKVCache`` of that size
    (keeping the first 4 tokens, as mlx-lm does); a sliding-window layer is
    already bounded, other kinds (a recurrent state) stay as they are.
    """
    from mlx_lm.models.cache import KVCache, RotatingKVCache, make_prompt_cache

    cache = make_prompt_cache(model)
    if settings.max_size is None:
        return cache
    return [
        RotatingKVCache(max_size=settings.max_size, keep=4) if type(layer) is KVCache else layer
        for layer in cache
    ]


def kv_arguments(warm: WarmModel, settings: KVCacheSettings) -> dict:
    """``stream_generate``'s arguments for a quantized KV cache (``--kv-bits``):
    quantized from the first prefill step on, so the whole prompt takes the
    room the estimate gave it (mlx-lm waits for 5,000 tokens by default), in
    groups of 64 numbers (32 where a head is not a multiple of 64).

    Raises:
        UserError: a head dimension MLX cannot quantize (not a multiple of 32).
    """
    if settings.bits is None:
        return {}
    _, head_dim = _kv_shape(warm.config)
    group = KV_GROUP_SIZE
    if head_dim is not None and head_dim % KV_GROUP_SIZE:
        if head_dim % 32:
            raise UserError(
                f"--kv-bits: the KV cache of {warm.name} cannot be quantized (its heads have "
                f"{head_dim} numbers, not a multiple of 32): leave --kv-bits out"
            )
        group = 32
    return {"kv_bits": settings.bits, "kv_group_size": group, "quantized_kv_start": 0}


def token_bytes(config: dict, itemsize: int, bits: Optional[int]) -> Optional[float]:
    """Bytes one token costs in one attention layer's KV cache (``None``: the
    config does not say)."""
    kv_heads, head_dim = _kv_shape(config)
    if kv_heads is None or head_dim is None:
        return None
    per_number = itemsize if bits is None else bits / 8 + 2 * itemsize / KV_GROUP_SIZE
    return 2 * kv_heads * head_dim * per_number


def estimate_kv_bytes(
    warm: WarmModel, settings: KVCacheSettings, cache: list[Any], tokens: int
) -> Optional[int]:
    """The KV cache's bytes once it holds ``tokens`` tokens (``None``: unknown)."""
    from mlx_lm.models.cache import KVCache, QuantizedKVCache, RotatingKVCache

    per_token = token_bytes(warm.config, _itemsize(warm.model), settings.bits)
    if per_token is None:
        return None
    kept = 0
    for layer in cache:
        if isinstance(layer, RotatingKVCache):
            kept += min(tokens, layer.max_size)
        elif isinstance(layer, (KVCache, QuantizedKVCache)):
            kept += tokens
    return int(kept * per_token)


def check_kv_fits(
    warm: WarmModel, settings: KVCacheSettings, cache: list[Any], tokens: int
) -> None:
    """Refuse a context whose KV cache cannot fit what the machine has left
    after the model's weights.

    Raises:
        UserError: one line with both sizes, naming ``--max-kv-size`` and ``--kv-bits``.
    """
    room = machine_room()
    needed = estimate_kv_bytes(warm, settings, cache, tokens)
    if room is None or needed is None:
        return
    # CUDA's free memory already leaves out the loaded weights; the other
    # numbers are the machine's whole room, which the weights take a share of.
    used = 0 if room.source == FREE_MEMORY else warm.memory_bytes
    left = max(0, room.bytes - used)
    if needed <= left:
        return
    raise UserError(
        f"This prompt's KV cache would need about {gib_text(needed)} GiB for {tokens:,} tokens "
        f"(the prompt and --max-tokens) and the machine has {gib_text(left)} GiB left beside "
        f"the weights of {warm.name} ({room.source}): keep only the newest tokens with "
        "--max-kv-size N, quantize the cache with --kv-bits 8 (or 4), or shorten the prompt"
    )


def _kv_shape(config: dict) -> tuple[Optional[int], Optional[int]]:
    """The model's KV heads and head dimension, as its config gives them."""
    nested = config.get("text_config")
    text: dict = nested if isinstance(nested, dict) else config
    heads = text.get("num_attention_heads")
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or (
        text["hidden_size"] // heads if isinstance(heads, int) and text.get("hidden_size") else None
    )
    return (
        kv_heads if isinstance(kv_heads, int) else None,
        head_dim if isinstance(head_dim, int) else None,
    )


def _itemsize(model: Any) -> int:
    """Bytes per number of the model's activations: its first floating-point
    parameters' (a quantized model's scales), else 2 (float16)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    for item in tree_flatten(model.parameters()):
        value = item[1]
        if isinstance(value, mx.array) and mx.issubdtype(value.dtype, mx.floating):
            return int(value.dtype.size)
    return 2
