"""Keep vision-encoder outputs of recent images, so a repeat question skips the encoder.

mlx-vlm lets a caller hand a model precomputed image features
(``cached_image_features``) and ships an LRU for them
(:class:`mlx_vlm.vision_cache.VisionFeatureCache`), which its
``stream_generate`` fills by itself for models with an ``encode_image(s)``
method. Qwen2-VL and Qwen2.5-VL accept precomputed features but have no such
method; for them the features are computed here, exactly as their
``get_input_embeddings`` would (the vision tower on the processed pixels).
Any other model runs without the cache: slower on a repeat, never wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import mlx.core as mx
    from mlx_vlm.vision_cache import VisionFeatureCache

# Models whose get_input_embeddings uses ``vision_tower(pixel_values,
# image_grid_thw)`` as the image features, or takes them from
# ``cached_image_features`` unchanged.
_TOWER_FEATURE_MODELS = frozenset({"qwen2_vl", "qwen2_5_vl"})


def make_feature_cache(max_entries: int = 16) -> VisionFeatureCache:
    """A :class:`VisionFeatureCache` that also counts hits and misses."""
    from mlx_vlm.vision_cache import VisionFeatureCache

    class CountingVisionFeatureCache(VisionFeatureCache):
        def __init__(self, max_size: int) -> None:
            super().__init__(max_size=max_size)
            self.hits = 0
            self.misses = 0

        def get(self, image_source: Any) -> Any:
            features = super().get(image_source)
            if features is None:
                self.misses += 1
            else:
                self.hits += 1
            return features

        def stats(self) -> dict:
            return {"entries": len(self), "hits": self.hits, "misses": self.misses}

    return CountingVisionFeatureCache(max_entries)


def feature_cache_mode(model: Any) -> Optional[str]:
    """How features can be cached for ``model``: ``"mlx_vlm"`` (its own
    ``encode_image(s)``), ``"tower"`` (computed here), or ``None``."""
    if hasattr(model, "encode_images") or hasattr(model, "encode_image"):
        return "mlx_vlm"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _TOWER_FEATURE_MODELS and hasattr(model, "vision_tower"):
        return "tower"
    return None


def tower_features(model: Any, pixel_values: mx.array, image_grid_thw: mx.array) -> mx.array:
    """The vision tower's output for processed images, as the model computes it.

    ``pixel_values`` and ``image_grid_thw`` are the processor's outputs for
    one image or several (Qwen2-VL's tower attends within each image only,
    so images encoded apart give the features of images encoded together).
    """
    import mlx.core as mx

    dtype = model.vision_tower.patch_embed.proj.weight.dtype
    features = model.vision_tower(
        pixel_values.astype(dtype), image_grid_thw, output_hidden_states=False
    )
    mx.eval(features)
    return features
