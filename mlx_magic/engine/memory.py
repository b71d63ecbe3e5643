"""MLX's memory, sampled after each generation (what ``%mlx memory`` plots)."""

from __future__ import annotations

from typing import Optional

from mlx_magic.runtime.values import GenerationStats, MemorySample


def memory_sample(generation: int, model: str, stats: Optional[GenerationStats]) -> MemorySample:
    """MLX's active, cache and peak memory now, with the answer's context and
    KV cache size (``stats``; ``None`` for a batch, which has no single one)."""
    import mlx.core as mx

    return MemorySample(
        generation=generation,
        model=model,
        active_bytes=mx.get_active_memory(),
        cache_bytes=mx.get_cache_memory(),
        peak_bytes=mx.get_peak_memory(),
        context_tokens=(stats.prompt_tokens + stats.generation_tokens) if stats else 0,
        kv_cache_bytes=stats.kv_cache_bytes if stats else 0,
    )
