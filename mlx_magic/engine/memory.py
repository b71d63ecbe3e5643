"""MLX's memory, sampled after each generation (what ``%mlx memory`` plots)."""

from __future__ import annotations

from typing import Optional

from mlx_magic.vocabulary.values import GenerationStats, MemorySample


def mlx_memory() -> dict[str, int]:
    """MLX's active, cache and peak memory now (bytes)."""
    import mlx.core as mx

    return {
        "active": mx.get_active_memory(),
        "cache": mx.get_cache_memory(),
        "peak": mx.get_peak_memory(),
    }


def release_cached_buffers() -> None:
    """Give MLX's cached buffers back (after caches were dropped)."""
    import mlx.core as mx

    mx.clear_cache()


def memory_sample(generation: int, model: str, stats: Optional[GenerationStats]) -> MemorySample:
    """MLX's active, cache and peak memory now, with the answer's context and
    KV cache size (``stats``; ``None`` for a batch, which has no single one)."""
    now = mlx_memory()
    return MemorySample(
        generation=generation,
        model=model,
        active_bytes=now["active"],
        cache_bytes=now["cache"],
        peak_bytes=now["peak"],
        context_tokens=(stats.prompt_tokens + stats.generation_tokens) if stats else 0,
        kv_cache_bytes=stats.kv_cache_bytes if stats else 0,
    )
