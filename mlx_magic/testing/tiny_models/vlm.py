"""The tiny Qwen2-VL (``model_type: qwen2_vl``) for mlx-vlm: config, processor files, build."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlx_magic.testing.tiny_models import tokenizer, weights
from mlx_magic.testing.tiny_models.folders import atomic_build, write_json

# Qwen2-VL's chat template (as shipped in Qwen/Qwen2-VL-*-Instruct): a
# default system turn, ChatML turns, and each image or video content part as
# <|vision_start|><|image_pad|><|vision_end|>; the processor then repeats
# <|image_pad|> once per merged patch.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content"
    " or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL's image normalisation (CLIP's mean and std).
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tiny_vlm(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """A tiny random Qwen2-VL (``model_type: qwen2_vl``) in ``folder``; returns it.

    The folder holds what a converted mlx-community Qwen2-VL repo holds:
    ``config.json``, ``generation_config.json``, ``model.safetensors``,
    ``preprocessor_config.json``, ``chat_template.json`` and the tokenizer
    files, plus ``processor_config.json`` and
    ``video_preprocessor_config.json`` so that mlx-vlm's processor never
    asks the hub for them. Images are resized to 56x56..224x224 pixels (4
    to 64 image tokens), so prompts stay short. About 0.9 MB.

    Idempotent: if a finished build with the same recipe is there, it is
    returned at once without touching anything.
    """
    recipe = {"kind": "qwen2_vl", "seed": int(seed)}
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_vlm(tmp, int(seed)))


def _fill_vlm(folder: Path, seed: int) -> None:
    """Write a tiny Qwen2-VL into ``folder`` (an empty temporary folder)."""
    from mlx_vlm.models import qwen2_vl

    ids, unreadable = tokenizer.write_tokenizer(folder, QWEN2_VL_CHAT_TEMPLATE)
    # The chat template also goes where mlx-vlm's processor loader and
    # transformers' processors look for it.
    write_json(folder / "chat_template.json", {"chat_template": QWEN2_VL_CHAT_TEMPLATE})

    hidden, heads = 64, 4
    head_dim = hidden // heads
    # mrope splits head_dim/2 rotary frequencies between the temporal,
    # height and width positions; Qwen2-VL's [16, 24, 24] scaled to 8.
    mrope_section = [2, 3, 3]
    assert sum(mrope_section) == head_dim // 2
    config = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        # Text settings live at the top level in Qwen2-VL's config;
        # mlx-vlm copies them into its text_config.
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section},
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        # Every id the tokenizer can produce is a row of the embedding, so
        # random generation never emits an id the detokenizer cannot map.
        "vocab_size": ids["vocab_size"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "vision_config": {
            "model_type": "qwen2_vl",
            "depth": 2,
            "embed_dim": 32,
            "num_heads": 2,
            "mlp_ratio": 4,
            # The merger projects vision features to the text width.
            "hidden_size": hidden,
            "in_channels": 3,
            "in_chans": 3,
            "patch_size": 14,
            "spatial_patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }
    write_json(folder / "config.json", config)
    write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
        },
    )
    # Images between 56x56 and 224x224 pixels: 4 to 64 image tokens each.
    min_pixels, max_pixels = 56 * 56, 224 * 224
    vision_preprocessing = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "rescale_factor": 1 / 255,
        "resample": 3,
        "image_mean": _IMAGE_MEAN,
        "image_std": _IMAGE_STD,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": 14,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "processor_class": "Qwen2VLProcessor",
    }
    write_json(
        folder / "preprocessor_config.json",
        {"image_processor_type": "Qwen2VLImageProcessor", **vision_preprocessing},
    )
    # mlx-vlm's Qwen2-VL processor looks for these two as well and asks the
    # hub for any that is missing; having them keeps loading fully local.
    write_json(
        folder / "video_preprocessor_config.json",
        {"video_processor_type": "Qwen2VLVideoProcessor", **vision_preprocessing},
    )
    write_json(folder / "processor_config.json", {"processor_class": "Qwen2VLProcessor"})

    # Instantiate mlx-vlm's own model from the config, exactly as load()
    # does, so the parameter names and shapes are the ones it will expect.
    # Its sanitize() leaves these MLX-layout names alone ("language_model.*"
    # and "vision_tower.*"; the 3-D patch conv is already channels-last).
    params = json.loads(json.dumps(config))  # from_dict adds text_config to it
    model_config = qwen2_vl.ModelConfig.from_dict(params)
    model_config.text_config = qwen2_vl.TextConfig.from_dict(params["text_config"])
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(params["vision_config"])
    model = qwen2_vl.Model(model_config)
    weights.save_random_weights(model, folder / "model.safetensors", seed, unreadable)
