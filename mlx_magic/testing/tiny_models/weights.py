"""Seeded random weights for a tiny model, saved as ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import mlx.nn as nn

# How much the embedding rows of unreadable tokens shrink (see tokenizer.unreadable_ids).
_QUIET_SCALE = 0.1


def save_random_weights(
    model: nn.Module,
    path: Path,
    seed: int,
    quiet_ids: list[int],
    constants: Optional[dict[str, float]] = None,
) -> None:
    """Give ``model`` seeded random weights and save them as ``path``.

    numpy's generator (not MLX's global one) so the values depend only on
    the seed and the parameter names. Norms start at one and biases at zero,
    as in a fresh HF model; every other weight is normal with std
    1/sqrt(fan_in), so each layer really mixes its input (with HF's tiny
    0.02 at width 64 the residual stream stays the input embedding and
    greedy decoding just repeats the last prompt token). Rows ``quiet_ids``
    of the token embedding are scaled down (see
    :func:`~mlx_magic.testing.tiny_models.tokenizer.unreadable_ids`).
    Parameters named in ``constants`` are filled with that value instead.
    Float32 throughout: fast on CPU and exact to compare.
    """
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(seed)
    flat = tree_flatten(model.parameters())
    assert isinstance(flat, list)  # (name, array) pairs: no dict destination given
    weights = {}
    for name, param in sorted(flat):
        leaf = name.rsplit(".", 1)[-1]
        is_norm = param.ndim == 1 and ("norm" in name or ".ln_" in name)
        if name in (constants or {}):
            value = np.full(param.shape, (constants or {})[name], np.float32)
        elif leaf == "bias":
            value = np.zeros(param.shape, np.float32)
        elif is_norm:
            value = np.ones(param.shape, np.float32)
        else:
            fan_in = int(np.prod(param.shape[1:]))
            value = rng.standard_normal(param.shape, dtype=np.float32)
            value /= np.sqrt(fan_in)
            if name.endswith("embed_tokens.weight"):
                value[quiet_ids] *= _QUIET_SCALE
        weights[name] = mx.array(value)
    mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})
