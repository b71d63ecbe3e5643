"""Tiny randomly initialised models, laid out exactly like hub repos.

Tests, CI notebooks and benchmarks need models that go through the *real*
loading and generation code of mlx-vlm and mlx-lm, but cannot download
anything and must run in seconds on a CPU. This module writes such models
into a folder:

* :func:`build_tiny_vlm` - a Qwen2-VL (``model_type: qwen2_vl``) with a
  64-wide, 2-layer language model and a 2-block vision tower, loadable with
  ``mlx_vlm.load`` and driven by ``mlx_vlm.stream_generate`` with images.
* :func:`build_tiny_llama` - a small llama for ``mlx_lm.load`` /
  ``mlx_lm.stream_generate``, with a ChatML chat template (as SmolLM2 has).

Both share a small byte-level BPE tokenizer, trained here on a fixed text so
that every build is byte-for-byte the same, with the Qwen2 special tokens
added. Weights are random, from a seeded generator; the text they produce
is noise (readable noise: see ``_unreadable_ids``), which is all a test of
the plumbing needs.

Builds are idempotent and atomic: everything is written into a temporary
sibling folder that is renamed into place last, with a marker file inside,
so a crashed or concurrent build never leaves a half model that counts.

Command line::

    python -m mlx_magic.tiny_models vlm|llama FOLDER [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

# Bump when the layout or contents of a build change, so that folders built
# by an older version are not mistaken for current ones.
FORMAT_VERSION = 1

# Written last into a build; its presence means the folder is complete. It
# also records the recipe so a folder built differently is not reused.
__all__ = ["MARKER", "build_tiny_llama", "build_tiny_vlm", "main"]

MARKER = "tiny_model.json"

# Qwen2's special tokens, in Qwen2's order (they get the ids after the BPE
# vocabulary, as in the real tokenizer). The processor and the model config
# look the vision ones up by name.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer split. transformers 5 rebuilds Qwen2Tokenizer's
# pipeline from vocab and merges with exactly this regex, so the tokenizer.json
# uses it too: the `tokenizers` and `transformers` views then agree.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Merges learned on top of the 256-symbol byte alphabet.
_BPE_MERGES = 512

# The fixed text the tokenizer is trained on. Plain English about pictures,
# so prompts used in tests ("Describe this image.") get multi-byte tokens.
_CORPUS = """\
Describe this image. What is in the picture? The image shows a small red
house on a green hill under a clear blue sky. There is a white cloud above
the house and a tall tree to the left of the door. A brown dog is sitting on
the grass in front of the house, and a black cat is sleeping in the window.
The sun is shining and the light is warm, as in the late afternoon.

This is a photo of a city street at night. The street is wet from the rain,
and the lights of the shops are reflected in the water. People are walking
with umbrellas. A yellow taxi is waiting at the corner next to a red bus.
In the background there are tall buildings with many bright windows.

The picture shows a plate of food on a wooden table: bread, cheese, green
apples and a cup of coffee. Next to the plate there is a book and a pair of
glasses. The colors are soft and the image looks calm and quiet.

A group of children are playing football in a park. One child is kicking the
ball and the others are running after it. There are trees around the field,
and a woman is sitting on a bench reading a newspaper. The sky is grey and
it looks like it might rain soon.

The diagram has three boxes connected by arrows. The first box says input,
the second says model, and the third says output. Under the boxes there is a
short caption that explains how the text and the images are processed.

You are a helpful assistant. Please answer the question about the image in
one or two sentences. The answer should be short, clear and correct. If you
are not sure, say that you do not know. Thank you for your help!

Numbers and words: one, two, three, four, five, six, seven, eight, nine, ten.
0 1 2 3 4 5 6 7 8 9 10 100 1000. Red, orange, yellow, green, blue, purple,
black, white, grey, brown, pink. Left, right, top, bottom, center, middle.
Cat, dog, bird, fish, horse, cow, sheep. Car, bus, train, plane, boat, bike.
"""

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

# ChatML for the text model (the format SmolLM2, a llama, uses), text only.
CHATML_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2-VL's image normalisation (CLIP's mean and std).
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# How much the embedding rows of unreadable tokens shrink (see _unreadable_ids).
_QUIET_SCALE = 0.1


# --------------------------------------------------------------------------
# Public API


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
    return _atomic_build(Path(folder), recipe, lambda tmp: _fill_vlm(tmp, int(seed)))


def build_tiny_llama(
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
) -> Path:
    """A tiny random llama text model for mlx-lm in ``folder``; returns it.

    It uses the same small tokenizer as the VLM (782 tokens), ties its
    embeddings, stores float32 weights and has a ChatML chat template with
    ``<|im_end|>`` as end of turn. At the default size (0.5 MB) it decodes
    at several hundred tokens per second on a shared 2-core CPU (measured
    ~670; hidden 128 with 4 layers: ~230).

    Idempotent: if a finished build with the same recipe is there, it is
    returned at once without touching anything.
    """
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must divide by num_heads and num_heads by num_kv_heads")
    recipe = {
        "kind": "llama",
        "seed": int(seed),
        "hidden_size": int(hidden_size),
        "num_layers": int(num_layers),
        "num_heads": int(num_heads),
        "num_kv_heads": int(num_kv_heads),
    }
    return _atomic_build(Path(folder), recipe, lambda tmp: _fill_llama(tmp, recipe))


def main(argv: list[str] | None = None) -> int:
    """``python -m mlx_magic.tiny_models vlm|llama FOLDER``: build, print the folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlx_magic.tiny_models",
        description="Build a tiny random model folder (idempotent).",
    )
    parser.add_argument("kind", choices=["vlm", "llama"])
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_tiny_vlm if args.kind == "vlm" else build_tiny_llama
    print(build(args.folder, seed=args.seed))
    return 0


# --------------------------------------------------------------------------
# Atomic, idempotent folder building


def _atomic_build(folder: Path, recipe: dict, fill: Callable[[Path], None]) -> Path:
    """Return ``folder`` holding the build ``recipe`` describes, making it if needed.

    ``fill`` writes the files into a temporary sibling folder, which is then
    renamed to ``folder``: a rename is atomic, so readers see either nothing
    or a whole model, and the marker written last is only ever seen inside a
    complete one.
    """
    folder = folder.expanduser().absolute()
    recipe = {"format": FORMAT_VERSION, **recipe}
    if _is_built(folder, recipe):
        return folder
    if folder.exists() and any(folder.iterdir()):
        # Not ours (or another recipe): never overwrite somebody's files.
        raise FileExistsError(
            f"{folder} exists and is not a tiny model built with {recipe}; "
            "choose another folder or remove it"
        )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        fill(tmp)
        (tmp / MARKER).write_text(json.dumps(recipe, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model folder is not
        if folder.exists():
            folder.rmdir()  # empty (checked above); rename needs it gone on some OSes
        try:
            os.rename(tmp, folder)
        except OSError:
            # Lost a race with a concurrent build of the same folder: fine
            # if the winner built the same thing.
            if not _is_built(folder, recipe):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _is_built(folder: Path, recipe: dict) -> bool:
    """Whether ``folder`` holds a finished build of ``recipe``."""
    try:
        return json.loads((folder / MARKER).read_text()) == recipe
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------
# Tokenizer


def _train_tokenizer():
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on ``_CORPUS``.

    Training on a fixed text is deterministic (checked across processes), so
    every build writes the same tokenizer.json.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tokenizer = Tokenizer(
        models.BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + _BPE_MERGES,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=alphabet,
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    # Specials after the learned vocabulary, as in Qwen2 (ids N, N+1, ...).
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    return tokenizer


def _write_tokenizer(folder: Path, chat_template: str) -> tuple[dict[str, int], list[int]]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json.

    Returns the vocabulary size and the ids of the special tokens, for the
    model config, and the ids :func:`_unreadable_ids` picks. The files
    follow Qwen2's: ``Qwen2Tokenizer`` (tokenizers-backed in transformers 5,
    no torch), ``<|im_end|>`` as eos and ``<|endoftext|>`` as pad.
    """
    tokenizer = _train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}

    extra = [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>",)]
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": {
            str(ids[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
        "additional_special_tokens": extra,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
        "chat_template": chat_template,
    }
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(
        folder / "special_tokens_map.json",
        {
            "additional_special_tokens": extra,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        },
    )
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    return {"vocab_size": vocab_size, **ids}, _unreadable_ids(tokenizer, vocab_size)


def _unreadable_ids(tokenizer, vocab_size: int) -> list[int]:
    """Ids of tokens that are not printable ASCII text: specials and stray bytes.

    Their embedding rows are scaled down (see :func:`_save_random_weights`).
    With tied embeddings the logit of a token grows with its row's norm, so
    greedy noise then rarely picks them: it streams as readable text instead
    of lone UTF-8 bytes the detokenizer must hold back, and does not end the
    turn or emit image tokens by chance.
    """

    def readable(i: int) -> bool:
        if tokenizer.id_to_token(i) in SPECIAL_TOKENS:
            return False
        # A lone byte of a multi-byte character decodes to U+FFFD.
        text = tokenizer.decode([i], skip_special_tokens=False)
        return bool(text) and all(c.isascii() and (c.isprintable() or c == "\n") for c in text)

    return [i for i in range(vocab_size) if not readable(i)]


# --------------------------------------------------------------------------
# Models


def _fill_vlm(folder: Path, seed: int) -> None:
    """Write a tiny Qwen2-VL into ``folder`` (an empty temporary folder)."""
    from mlx_vlm.models import qwen2_vl

    ids, unreadable = _write_tokenizer(folder, QWEN2_VL_CHAT_TEMPLATE)
    # The chat template also goes where mlx-vlm's processor loader and
    # transformers' processors look for it.
    _write_json(folder / "chat_template.json", {"chat_template": QWEN2_VL_CHAT_TEMPLATE})

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
    _write_json(folder / "config.json", config)
    _write_json(
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
    _write_json(
        folder / "preprocessor_config.json",
        {"image_processor_type": "Qwen2VLImageProcessor", **vision_preprocessing},
    )
    # mlx-vlm's Qwen2-VL processor looks for these two as well and asks the
    # hub for any that is missing; having them keeps loading fully local.
    _write_json(
        folder / "video_preprocessor_config.json",
        {"video_processor_type": "Qwen2VLVideoProcessor", **vision_preprocessing},
    )
    _write_json(folder / "processor_config.json", {"processor_class": "Qwen2VLProcessor"})

    # Instantiate mlx-vlm's own model from the config, exactly as load()
    # does, so the parameter names and shapes are the ones it will expect.
    # Its sanitize() leaves these MLX-layout names alone ("language_model.*"
    # and "vision_tower.*"; the 3-D patch conv is already channels-last).
    params = json.loads(json.dumps(config))  # from_dict adds text_config to it
    model_config = qwen2_vl.ModelConfig.from_dict(params)
    model_config.text_config = qwen2_vl.TextConfig.from_dict(params["text_config"])
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(params["vision_config"])
    model = qwen2_vl.Model(model_config)
    _save_random_weights(model, folder / "model.safetensors", seed, unreadable)


def _fill_llama(folder: Path, recipe: dict) -> None:
    """Write a tiny llama into ``folder`` (an empty temporary folder)."""
    from mlx_lm.models import llama

    ids, unreadable = _write_tokenizer(folder, CHATML_CHAT_TEMPLATE)
    hidden = recipe["hidden_size"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": recipe["num_layers"],
        "num_attention_heads": recipe["num_heads"],
        "num_key_value_heads": recipe["num_kv_heads"],
        "head_dim": hidden // recipe["num_heads"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vocab_size": ids["vocab_size"],
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    _write_json(folder / "config.json", config)
    _write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
    )
    model = llama.Model(llama.ModelArgs.from_dict(config))
    _save_random_weights(model, folder / "model.safetensors", recipe["seed"], unreadable)


def _save_random_weights(model, path: Path, seed: int, quiet_ids: list[int]) -> None:
    """Give ``model`` seeded random weights and save them as ``path``.

    numpy's generator (not MLX's global one) so the values depend only on
    the seed and the parameter names. Norms start at one and biases at zero,
    as in a fresh HF model; every other weight is normal with std
    1/sqrt(fan_in), so each layer really mixes its input (with HF's tiny
    0.02 at width 64 the residual stream stays the input embedding and
    greedy decoding just repeats the last prompt token). Rows ``quiet_ids``
    of the token embedding are scaled down (see :func:`_unreadable_ids`).
    Float32 throughout: fast on CPU and exact to compare.
    """
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(seed)
    weights = {}
    for name, param in sorted(tree_flatten(model.parameters())):
        leaf = name.rsplit(".", 1)[-1]
        is_norm = param.ndim == 1 and ("norm" in name or ".ln_" in name)
        if leaf == "bias":
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


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
