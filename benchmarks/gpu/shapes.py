"""The shapes of the models users run, as config.json dicts (weights are random).

Each :class:`Shape` is the architecture part of the public model's config
(sizes, heads, vocabulary, context, RoPE settings); :mod:`.build` fills it with
random weights and quantizes it to 4 bits (group size 64, as mlx-community's
``-4bit`` conversions). A random model of a real shape decodes and prefills
at the speed of the trained one: the work per token is the same matrices.

``mini=True`` gives the same architectures at toy sizes, to check the whole
path on a CPU in seconds (``python -m benchmarks.gpu --mini``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shape:
    """One model shape: ``name`` (the alias the cells use), ``label`` (the
    report's), the kind (``text`` for mlx-lm, ``vision`` for mlx-vlm), its
    config, and about how many parameters it has (billions, informational)."""

    name: str
    label: str
    kind: str
    config: dict = field(default_factory=dict)
    billions: float = 0.0

    @property
    def small(self) -> bool:
        """At most 1.5 B parameters (the warm-TTFT target applies)."""
        return self.billions <= 1.5


_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "bfloat16",
}

_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "sliding_window": 32768,
}


def _llama3_rope(factor: float) -> dict:
    return {
        "factor": factor,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    }


def shapes(mini: bool = False) -> dict[str, Shape]:
    """The shapes by name, in the order the report lists them."""
    if mini:
        return _mini_shapes()
    found = [
        Shape(
            "smollm2-135m",
            "SmolLM2-135M shape (576 × 30)",
            "text",
            {
                **_LLAMA,
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "head_dim": 64,
                "vocab_size": 49152,
                "max_position_embeddings": 8192,
                "rope_theta": 100000.0,
                "tie_word_embeddings": True,
            },
            0.135,
        ),
        Shape(
            "qwen2.5-0.5b",
            "Qwen2.5-0.5B shape (896 × 24)",
            "text",
            {
                **_QWEN2,
                "hidden_size": 896,
                "intermediate_size": 4864,
                "num_hidden_layers": 24,
                "num_attention_heads": 14,
                "num_key_value_heads": 2,
                "vocab_size": 151936,
                "max_position_embeddings": 32768,
                "max_window_layers": 21,
                "rope_theta": 1000000.0,
                "tie_word_embeddings": True,
            },
            0.49,
        ),
        Shape(
            "llama-3.2-1b",
            "Llama-3.2-1B shape (2048 × 16)",
            "text",
            {
                **_LLAMA,
                "hidden_size": 2048,
                "intermediate_size": 8192,
                "num_hidden_layers": 16,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 64,
                "vocab_size": 128256,
                "max_position_embeddings": 131072,
                "rope_theta": 500000.0,
                "rope_scaling": _llama3_rope(32.0),
                "tie_word_embeddings": True,
            },
            1.24,
        ),
        Shape(
            "llama-3.1-8b",
            "Llama-3.1-8B shape (4096 × 32)",
            "text",
            {
                **_LLAMA,
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "head_dim": 128,
                "vocab_size": 128256,
                "max_position_embeddings": 131072,
                "rope_theta": 500000.0,
                "rope_scaling": _llama3_rope(8.0),
                "tie_word_embeddings": False,
            },
            8.0,
        ),
        Shape(
            "qwen2-vl-2b",
            "Qwen2-VL-2B shape (1536 × 28, ViT 1280 × 32)",
            "vision",
            _qwen2_vl(
                hidden=1536,
                intermediate=8960,
                layers=28,
                heads=12,
                kv_heads=2,
                vocab=151936,
                mrope=[16, 24, 24],
                vision={"depth": 32, "embed_dim": 1280, "num_heads": 16},
            ),
            2.2,
        ),
    ]
    return {shape.name: shape for shape in found}


def _qwen2_vl(*, hidden, intermediate, layers, heads, kv_heads, vocab, mrope, vision) -> dict:
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
        "max_window_layers": layers,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": mrope},
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": vocab,
        "vision_config": {
            "model_type": "qwen2_vl",
            "mlp_ratio": 4,
            "hidden_size": hidden,
            "in_channels": 3,
            "in_chans": 3,
            "patch_size": 14,
            "spatial_patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            **vision,
        },
    }


def _mini_shapes() -> dict[str, Shape]:
    """The same architectures at toy sizes (for a CPU check of the whole path)."""
    small_llama = {
        **_LLAMA,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 1024,
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    }
    found = [
        Shape("mini-llama", "mini llama (64 × 2)", "text", small_llama, 0.0001),
        Shape(
            "mini-qwen2",
            "mini Qwen2 (64 × 2)",
            "text",
            {
                **_QWEN2,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 1024,
                "max_position_embeddings": 32768,
                "max_window_layers": 2,
                "rope_theta": 1000000.0,
                "tie_word_embeddings": True,
            },
            0.0001,
        ),
        Shape(
            "mini-llama-untied",
            "mini llama, untied (64 × 2)",
            "text",
            {**small_llama, "tie_word_embeddings": False, "rope_scaling": _llama3_rope(8.0)},
            2.0,  # stands in for the large model: no warm-TTFT target
        ),
        Shape(
            "mini-qwen2-vl",
            "mini Qwen2-VL (64 × 2, ViT 32 × 2)",
            "vision",
            _qwen2_vl(
                hidden=64,
                intermediate=128,
                layers=2,
                heads=4,
                kv_heads=2,
                vocab=1024,
                mrope=[2, 3, 3],
                vision={"depth": 2, "embed_dim": 32, "num_heads": 2},
            ),
            0.0001,
        ),
    ]
    return {shape.name: shape for shape in found}
