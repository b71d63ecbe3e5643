"""Convert a llama-family GGUF file into a folder ``mlx_lm.load`` accepts:
weights through ``mx.load``, config, tokenizer, the folder (what is kept and
what is re-quantized: :mod:`mlx_magic.models.gguf`, which reads the header).

Imports MLX: the loader (:mod:`.loading`) runs it on the runtime's side.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_magic.models.gguf.header import (
    _FORMAT_VERSION,
    _NATIVE_ONLY_TYPES,
    UnsupportedGGUF,
    _check_supported,
    _mlx_name,
    _read_header,
)
from mlx_magic.models.gguf.tokenizer import _tokenizer_files

_GROUP_SIZE = 32
_FLOAT_REQUANT_BITS = 8
_MARKER = "gguf_source.json"
_SHARD_BYTES = 4 << 30


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert gguf_path into an mlx-lm model folder at out_dir and return out_dir.

    Writes into a temporary folder beside out_dir and renames it into place,
    so an interrupted conversion never leaves a half folder. If out_dir
    already holds a finished conversion, returns at once.

    Raises UnsupportedGGUF for files this converter cannot handle.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if (out_dir / _MARKER).is_file():
        return out_dir
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")

    # Check architecture, tensor types and tokenizer from the header before
    # mx.load spends time decoding (or fails with a vague error).
    scalars, tensor_types = _read_header(gguf_path)
    _check_supported(gguf_path, scalars, tensor_types)

    loaded = mx.load(str(gguf_path), format="gguf", return_metadata=True)
    # With return_metadata, mx.load returns (tensors, metadata).
    assert isinstance(loaded, tuple)
    tensors, metadata = loaded
    _check_loaded(tensors, tensor_types)
    metadata = {k: _plain(v) for k, v in metadata.items()}
    config = _model_config(metadata, tensors)
    weights = _convert_weights(tensors, config)
    config["quantization"] = _quantization_config(weights)
    tokenizer_files = _tokenizer_files(metadata)
    source = {
        "file": gguf_path.name,
        "size": gguf_path.stat().st_size,
        "mtime_ns": gguf_path.stat().st_mtime_ns,
        "format_version": _FORMAT_VERSION,
    }
    _write_atomically(out_dir, config, weights, tokenizer_files, source)
    return out_dir


def _plain(value: object) -> object:
    """Metadata value as plain Python (mx.load gives scalars as 0-d arrays)."""
    if isinstance(value, mx.array):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def _float32_value(x: float) -> float:
    """The shortest decimal for a float32 value, e.g. 1e-05 rather than 9.99999974e-06."""
    return float(str(np.float32(x)))


# --------------------------------------------------------------------------
# Model config and weights


def _model_config(meta: dict, tensors: dict) -> dict:
    """mlx-lm (Hugging Face style) llama config from the llama.* metadata."""

    def need(key: str) -> Any:
        if key not in meta:
            raise UnsupportedGGUF(f"GGUF metadata lacks {key!r}; the file is incomplete")
        return meta[key]

    if "token_embd.weight" not in tensors:
        raise UnsupportedGGUF("GGUF file has no token_embd tensor; the file is incomplete")
    hidden = int(need("llama.embedding_length"))
    n_head = int(need("llama.attention.head_count"))
    n_kv_head = int(meta.get("llama.attention.head_count_kv", n_head))
    head_dim = int(meta.get("llama.attention.key_length", hidden // n_head))
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(need("llama.block_count")),
        "intermediate_size": int(need("llama.feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv_head,
        "head_dim": head_dim,
        "rms_norm_eps": _float32_value(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _float32_value(meta.get("llama.rope.freq_base", 10000.0)),
        # The embedding's rows are the truth; llama.vocab_size is often absent.
        "vocab_size": int(tensors["token_embd.weight"].shape[0]),
        "max_position_embeddings": int(meta.get("llama.context_length", 4096)),
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        "mlp_bias": "blk.0.ffn_up.bias" in tensors,
    }
    scaling = meta.get("llama.rope.scaling.type")
    if scaling == "linear":
        config["rope_scaling"] = {
            "type": "linear",
            "factor": _float32_value(meta["llama.rope.scaling.factor"]),
        }
    elif scaling not in (None, "none"):
        raise UnsupportedGGUF(f"rope scaling {scaling!r} is not supported")
    for name in ("bos", "eos"):
        if f"tokenizer.ggml.{name}_token_id" in meta:
            config[f"{name}_token_id"] = int(meta[f"tokenizer.ggml.{name}_token_id"])
    return config


def _unpermute_rows(a: mx.array, n_head: int) -> mx.array:
    """Undo llama.cpp's Q/K row permutation for rotary embeddings.

    llama.cpp reorders each head's rows from "first half, second half" to
    interleaved pairs; mlx-lm's (non-traditional) RoPE expects the original
    order. Rows are the output dimension, so the same reordering applies to
    packed quantized weights, their scales and biases, and bias vectors.
    """
    shape = a.shape
    head_dim = shape[0] // n_head
    return a.reshape(n_head, head_dim // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def _check_loaded(tensors: dict, tensor_types: dict[str, str]) -> None:
    """Reject types that mx.load only decodes through its faulty float fallback."""
    for name, ggml_type in tensor_types.items():
        if ggml_type in _NATIVE_ONLY_TYPES and tensors[name].dtype != mx.uint32:
            raise UnsupportedGGUF(
                f"{ggml_type} weights ({name}, ...) are decoded incorrectly by this MLX version; "
                f"use a Q4_0, Q4_1, Q8_0 or F16 GGUF instead"
            )


def _convert_weights(tensors: dict, config: dict) -> dict:
    """Rename, un-permute and (re)quantize GGUF tensors into mlx-lm weights."""
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    weights = {}
    for name, a in tensors.items():
        base = name.rpartition(".")[0]
        kind = base.rpartition(".")[2]
        if kind in heads:
            a = _unpermute_rows(a, heads[kind])
        if a.dtype != mx.uint32:
            a = a.astype(mx.float32)
        mlx_name = _mlx_name(name)
        assert mlx_name is not None  # _check_supported refused unknown names
        weights[mlx_name] = a

    # Matrices that arrived as floats: quantize so every linear layer and the
    # embedding run through the same fast quantized kernels.
    for key in [
        k
        for k, a in weights.items()
        if k.endswith(".weight")
        and a.ndim == 2
        and a.dtype != mx.uint32
        and a.shape[-1] % _GROUP_SIZE == 0
    ]:
        prefix = key[: -len(".weight")]
        w, scales, biases = mx.quantize(
            weights[key], group_size=_GROUP_SIZE, bits=_FLOAT_REQUANT_BITS
        )
        weights[key], weights[prefix + ".scales"], weights[prefix + ".biases"] = w, scales, biases
    return weights


def _bits_of(weights: dict, prefix: str) -> int:
    """Bits per weight of a quantized matrix, inferred from packed and scale shapes."""
    packed, scales = weights[prefix + ".weight"], weights[prefix + ".scales"]
    return packed.shape[-1] * 32 // (scales.shape[-1] * _GROUP_SIZE)


def _quantization_config(weights: dict) -> dict:
    """mlx-lm quantization config: the most common bit width, plus per-layer overrides."""
    bits = {
        k[: -len(".scales")]: _bits_of(weights, k[: -len(".scales")])
        for k in weights
        if k.endswith(".scales")
    }
    default = Counter(bits.values()).most_common(1)[0][0] if bits else 4
    config = {"group_size": _GROUP_SIZE, "bits": default, "mode": "affine"}
    for prefix, b in sorted(bits.items()):
        if b != default:
            config[prefix] = {"group_size": _GROUP_SIZE, "bits": b, "mode": "affine"}
    return config


# --------------------------------------------------------------------------
# Writing


def _write_atomically(
    out_dir: Path, config: dict, weights: dict, tokenizer_files: dict[str, str], source: dict
) -> None:
    """Write everything into a temp folder beside out_dir, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _save_weights(tmp, weights)
        files = {"config.json": json.dumps(config, indent=2), **tokenizer_files}
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        # The marker goes last: its presence means "finished".
        (tmp / _MARKER).write_text(json.dumps(source, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty placeholder folder is fine to replace
        try:
            os.rename(tmp, out_dir)
        except OSError as exc:
            # Lost a race with another converter that finished first: fine.
            if not (out_dir / _MARKER).is_file():
                raise FileExistsError(
                    f"{out_dir} already exists and is not a finished GGUF conversion"
                ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_weights(folder: Path, weights: dict) -> None:
    """Save as model.safetensors, or as shards with an index when large."""
    shards: list[dict] = []
    current: dict = {}
    size = 0
    for key in sorted(weights):
        nbytes = weights[key].nbytes
        if current and size + nbytes > _SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key] = weights[key]
        size += nbytes
    shards.append(current)

    if len(shards) == 1:
        mx.save_safetensors(
            str(folder / "model.safetensors"), shards[0], metadata={"format": "mlx"}
        )
        return
    index = {"metadata": {"total_size": sum(a.nbytes for a in weights.values())}, "weight_map": {}}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        mx.save_safetensors(str(folder / name), shard, metadata={"format": "mlx"})
        index["weight_map"].update(dict.fromkeys(shard, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2), encoding="utf-8"
    )
