"""Tiny embedding models for mlx-vlm's embedding loader: a Qwen3-Embedding (text).

Laid out as the hub's sentence-transformers folders are: ``config.json`` with
``model_type: qwen3`` (mlx-vlm's loader renames it ``qwen3_embedding``),
``modules.json`` and ``1_Pooling/config.json`` (last-token pooling, as
Qwen3-Embedding has), the shared small tokenizer, and seeded random weights
of mlx-vlm's own ``qwen3_embedding.Model``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlx_magic.testing.tiny_models import tokenizer, weights
from mlx_magic.testing.tiny_models.folders import atomic_build, write_json


def build_tiny_text_embedder(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
) -> Path:
    """A tiny random Qwen3-Embedding in ``folder``; returns it (about 0.5 MB).

    Its vectors are ``hidden_size`` wide, last-token pooled and normalised, as
    the real model's are. Larger sizes give a real model's shape for a
    benchmark (Qwen3-Embedding-0.6B: 1024 wide, 28 layers, 16 heads).
    Idempotent, like every tiny model build.
    """
    if hidden_size % num_heads or num_heads % 2:
        raise ValueError("hidden_size must divide by num_heads, and num_heads be even")
    recipe = {
        "kind": "qwen3_embedding",
        "seed": int(seed),
        "hidden_size": int(hidden_size),
        "num_layers": int(num_layers),
        "num_heads": int(num_heads),
    }
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_text_embedder(tmp, recipe))


def _fill_text_embedder(folder: Path, recipe: dict) -> None:
    from mlx_vlm.models.qwen3_embedding import ModelConfig
    from mlx_vlm.models.qwen3_embedding.qwen3_embedding import Model

    # No chat template: an embedder reads the text as it is.
    ids, unreadable = tokenizer.write_tokenizer(folder, "")
    hidden, heads = recipe["hidden_size"], recipe["num_heads"]
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": hidden,
        "intermediate_size": 3 * hidden,
        "num_hidden_layers": recipe["num_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 8192,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vocab_size": ids["vocab_size"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    write_json(folder / "config.json", config)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ],
            indent=2,
        )
    )
    (folder / "1_Pooling").mkdir()
    write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_lasttoken": True,
            "include_prompt": True,
        },
    )
    params = {**config, "model_type": "qwen3_embedding"}
    model = Model(ModelConfig.from_dict(params))
    weights.save_random_weights(model, folder / "model.safetensors", recipe["seed"], unreadable)


def build_tiny_image_embedder(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """A tiny random Qwen3-VL-Embedding in ``folder``; returns it (about 1 MB).

    It embeds images and texts into one space (64 wide, last-token pooled,
    normalised), through mlx-vlm's own ``qwen3_vl_embedding.Model`` and its
    Qwen3-VL processor; images are resized to 64x64..256x256 pixels (4 to 64
    image tokens). Idempotent, like every tiny model build.
    """
    recipe = {"kind": "qwen3_vl_embedding", "seed": int(seed)}
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_image_embedder(tmp, int(seed)))


def _fill_image_embedder(folder: Path, seed: int) -> None:
    from mlx_vlm.models import qwen3_vl_embedding

    from mlx_magic.testing.tiny_models.vlm import QWEN2_VL_CHAT_TEMPLATE

    ids, unreadable = tokenizer.write_tokenizer(folder, QWEN2_VL_CHAT_TEMPLATE)
    write_json(folder / "chat_template.json", {"chat_template": QWEN2_VL_CHAT_TEMPLATE})
    hidden, heads = 64, 4
    head_dim = hidden // heads
    text_config = {
        "model_type": "qwen3_vl",
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
        "rope_theta": 5000000.0,
        # Qwen3-VL's [24, 20, 20] of 64 rotary frequencies, scaled to 8.
        "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": True,
        "vocab_size": ids["vocab_size"],
    }
    config = {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl_embedding",
        "text_config": text_config,
        "vision_config": {
            "model_type": "qwen3_vl",
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [],
        },
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vocab_size": ids["vocab_size"],
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    write_json(folder / "config.json", config)
    # Qwen3-VL's: 16-pixel patches merged 2x2, mean and std 0.5; small images.
    min_pixels, max_pixels = 64 * 64, 256 * 256
    processing = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "rescale_factor": 1 / 255,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": 16,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "processor_class": "Qwen3VLProcessor",
    }
    write_json(
        folder / "preprocessor_config.json",
        {"image_processor_type": "Qwen2VLImageProcessor", **processing},
    )
    write_json(
        folder / "video_preprocessor_config.json",
        {"video_processor_type": "Qwen3VLVideoProcessor", **processing},
    )
    write_json(folder / "processor_config.json", {"processor_class": "Qwen3VLProcessor"})
    params = json.loads(json.dumps(config))
    model_config = qwen3_vl_embedding.ModelConfig.from_dict(params)
    model = qwen3_vl_embedding.Model(model_config)
    weights.save_random_weights(model, folder / "model.safetensors", seed, unreadable)
