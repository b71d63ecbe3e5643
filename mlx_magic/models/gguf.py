"""Convert a llama-family GGUF file into a folder that ``mlx_lm.load`` accepts.

The folder holds ``config.json``, ``model.safetensors`` (or shards),
``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and
``gguf_source.json`` (which file it came from; its presence marks a finished
conversion).

Weights: ``mx.load`` reads Q4_0, Q4_1 and Q8_0 tensors directly as MLX affine
quantized arrays (group size 32); those are kept as they are, bit for bit.
F32, F16, BF16 and the K-quants Q2_K and Q6_K come out of ``mx.load`` as
floats; their matrices are re-quantized to 8-bit affine (group 32), which on
CPU is as fast as float32, a third of its size, and far finer than the
source quantization. Every other type (Q5_0, Q5_1, Q3_K, Q5_K, the IQ types,
...) raises :class:`UnsupportedGGUF`. So does Q4_K when MLX only offers its
float fallback for it: that fallback decodes the second half of every
64-weight chunk with the wrong scale, which silently corrupts the model.

Scales, biases and norms are stored as float32: on CPU, quantized matmuls with
float16 scales are tens of times slower.

Tokenizer: only byte-level BPE vocabularies (``tokenizer.ggml.model`` "gpt2")
with a known pre-tokenizer are converted; SentencePiece ("llama") vocabularies
raise :class:`UnsupportedGGUF`.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import mlx.core as mx
import numpy as np

__all__ = ["UnsupportedGGUF", "convert_gguf", "conversion_dir_for"]

# Bump when the output layout changes, so cached conversions are redone.
_FORMAT_VERSION = 1
# GGUF's legacy quant blocks and MLX's GGUF loader both use 32 weights a group.
_GROUP_SIZE = 32
# Bits for re-quantizing matrices that mx.load hands over as floats.
_FLOAT_REQUANT_BITS = 8
_MARKER = "gguf_source.json"
_SHARD_BYTES = 4 << 30

# ggml tensor type ids (ggml.h) -> names, for error messages.
_GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
    9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K",
    15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
    20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16",
    26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0",
    35: "TQ2_0",
}
# Types mx.load decodes correctly (checked against ggml's reference decoders).
_SUPPORTED_TYPES = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q2_K", "Q6_K"}
# Accepted only if mx.load returns it still quantized (newer MLX versions).
_NATIVE_ONLY_TYPES = {"Q4_K"}

_TOP_LEVEL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_SUFFIXES = ("weight", "bias", "scales", "biases")

# Pre-tokenizer regexes for byte-level BPE, by tokenizer.ggml.pre.
_GPT2_PATTERN = None  # ByteLevel's built-in GPT-2 split
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# name -> (split digits one by one first?, regex or None for GPT-2's)
_PRE_TOKENIZERS = {
    "default": (False, _GPT2_PATTERN),
    "gpt2": (False, _GPT2_PATTERN),
    "smollm": (True, _GPT2_PATTERN),
    "starcoder": (True, _GPT2_PATTERN),
    "refact": (True, _GPT2_PATTERN),
    "llama-bpe": (False, _LLAMA3_PATTERN),
    "llama3": (False, _LLAMA3_PATTERN),
}

_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4


class UnsupportedGGUF(ValueError):
    """The GGUF file cannot be converted (architecture or quantization type); the message is one line a user can act on."""


def conversion_dir_for(gguf_path: str | os.PathLike, cache_root: str | os.PathLike) -> Path:
    """A stable folder under cache_root for this file, keyed by file name + size + mtime.

    A changed (or replaced) file gets a new folder and so converts again.
    """
    path = Path(gguf_path)
    st = path.stat()
    key = f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\0{_FORMAT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80] or "model"
    return Path(cache_root) / f"{stem}-{digest}"


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

    tensors, metadata = mx.load(str(gguf_path), format="gguf", return_metadata=True)
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


# --------------------------------------------------------------------------
# Header reading and checks


def _read_header(path: Path) -> tuple[dict, dict[str, str]]:
    """Read a GGUF header without decoding tensors.

    Returns (scalar metadata values, {tensor name: ggml type name}); array
    values are skipped. Raises UnsupportedGGUF if this is not a GGUF file.
    """
    value_formats = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f",
                     7: "?", 10: "Q", 11: "q", 12: "d"}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UnsupportedGGUF(f"{path.name} is not a GGUF file (no GGUF magic bytes)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = 4

            def take(fmt):
                nonlocal pos
                values = struct.unpack_from("<" + fmt, buf, pos)
                pos += struct.calcsize("<" + fmt)
                return values[0] if len(values) == 1 else values

            def string():
                nonlocal pos
                n = take("Q")
                pos += n
                if pos > len(buf):
                    raise struct.error("string runs past end of file")
                return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

            def skip(vtype):
                nonlocal pos
                if vtype == 8:
                    string()
                elif vtype == 9:
                    item_type, count = take("IQ")
                    if item_type in value_formats:
                        pos += count * struct.calcsize(value_formats[item_type])
                    else:
                        for _ in range(count):
                            skip(item_type)
                else:
                    take(value_formats[vtype])

            try:
                version = take("I")
                if version < 2:
                    raise UnsupportedGGUF(
                        f"{path.name} is GGUF version {version}; re-export it with a current llama.cpp"
                    )
                n_tensors, n_kv = take("QQ")
                scalars = {}
                for _ in range(n_kv):
                    key, vtype = string(), take("I")
                    if vtype == 8:
                        scalars[key] = string()
                    elif vtype in value_formats:
                        scalars[key] = take(value_formats[vtype])
                    else:
                        skip(vtype)
                types = {}
                for _ in range(n_tensors):
                    name = string()
                    n_dims = take("I")
                    pos += 8 * n_dims  # dims
                    ggml_type = take("I")
                    pos += 8  # data offset
                    types[name] = _GGML_TYPES.get(ggml_type, f"type {ggml_type}")
            except UnsupportedGGUF:
                raise
            except (struct.error, KeyError) as exc:  # short read or unknown value type
                raise UnsupportedGGUF(f"{path.name} is truncated or not a valid GGUF file") from exc
    return scalars, types


def _check_supported(path: Path, scalars: dict, tensor_types: dict[str, str]) -> None:
    """Raise UnsupportedGGUF unless the model, weights and tokenizer can be converted."""
    arch = scalars.get("general.architecture")
    if arch != "llama":
        raise UnsupportedGGUF(
            f"{path.name}: architecture {arch!r} is not supported; only 'llama' GGUF models can be converted"
        )
    if "rope_freqs.weight" in tensor_types:
        raise UnsupportedGGUF(
            f"{path.name} uses Llama 3.1-style rope frequency factors (rope_freqs), which are not supported"
        )
    unknown = sorted(n for n in tensor_types if _mlx_name(n) is None)
    if unknown:
        raise UnsupportedGGUF(
            f"{path.name}: unexpected tensor(s) {', '.join(unknown[:3])}; this llama variant is not supported"
        )
    bad = Counter(t for t in tensor_types.values()
                  if t not in _SUPPORTED_TYPES | _NATIVE_ONLY_TYPES)
    if bad:
        kinds = ", ".join(f"{t} ({n} tensors)" for t, n in bad.most_common())
        raise UnsupportedGGUF(
            f"{path.name} uses quantization type(s) MLX cannot read: {kinds}; "
            f"use a Q4_0, Q4_1, Q8_0 or F16 GGUF instead"
        )
    tok_model = scalars.get("tokenizer.ggml.model")
    if tok_model != "gpt2":
        raise UnsupportedGGUF(
            f"{path.name}: tokenizer model {tok_model!r} is not supported; only byte-level BPE ('gpt2') vocabularies are"
        )
    pre = scalars.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise UnsupportedGGUF(
            f"{path.name}: pre-tokenizer {pre!r} is not supported (known: {', '.join(sorted(_PRE_TOKENIZERS))})"
        )


def _plain(value):
    """Metadata value as plain Python (mx.load gives scalars as 0-d arrays)."""
    if isinstance(value, mx.array):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


def _float32_value(x) -> float:
    """The shortest decimal for a float32 value, e.g. 1e-05 rather than 9.99999974e-06."""
    return float(str(np.float32(x)))


# --------------------------------------------------------------------------
# Model config and weights


def _mlx_name(gguf_name: str) -> str | None:
    """mlx-lm parameter name for a GGUF tensor name, or None if unknown."""
    base, _, suffix = gguf_name.rpartition(".")
    if suffix not in _SUFFIXES:
        return None
    if base in _TOP_LEVEL_NAMES:
        return f"{_TOP_LEVEL_NAMES[base]}.{suffix}"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)", base)
    if m and m.group(2) in _LAYER_NAMES:
        return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}.{suffix}"
    return None


def _model_config(meta: dict, tensors: dict) -> dict:
    """mlx-lm (Hugging Face style) llama config from the llama.* metadata."""
    def need(key):
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
        weights[_mlx_name(name)] = a

    # Matrices that arrived as floats: quantize so every linear layer and the
    # embedding run through the same fast quantized kernels.
    for key in [k for k, a in weights.items() if k.endswith(".weight") and a.ndim == 2
                and a.dtype != mx.uint32 and a.shape[-1] % _GROUP_SIZE == 0]:
        prefix = key[: -len(".weight")]
        w, scales, biases = mx.quantize(weights[key], group_size=_GROUP_SIZE, bits=_FLOAT_REQUANT_BITS)
        weights[key], weights[prefix + ".scales"], weights[prefix + ".biases"] = w, scales, biases
    return weights


def _bits_of(weights: dict, prefix: str) -> int:
    """Bits per weight of a quantized matrix, inferred from packed and scale shapes."""
    packed, scales = weights[prefix + ".weight"], weights[prefix + ".scales"]
    return packed.shape[-1] * 32 // (scales.shape[-1] * _GROUP_SIZE)


def _quantization_config(weights: dict) -> dict:
    """mlx-lm quantization config: the most common bit width, plus per-layer overrides."""
    bits = {k[: -len(".scales")]: _bits_of(weights, k[: -len(".scales")])
            for k in weights if k.endswith(".scales")}
    default = Counter(bits.values()).most_common(1)[0][0] if bits else 4
    config = {"group_size": _GROUP_SIZE, "bits": default, "mode": "affine"}
    for prefix, b in sorted(bits.items()):
        if b != default:
            config[prefix] = {"group_size": _GROUP_SIZE, "bits": b, "mode": "affine"}
    return config


# --------------------------------------------------------------------------
# Tokenizer


def _tokenizer_files(meta: dict) -> dict[str, str]:
    """Contents of tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)  # keep the first id if a token repeats
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    split_digits, pattern = _PRE_TOKENIZERS[meta.get("tokenizer.ggml.pre", "default")]
    steps = [pre_tokenizers.Digits(individual_digits=True)] if split_digits else []
    if pattern is None:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    else:
        steps += [pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()

    # Control tokens are special (skipped when decoding with
    # skip_special_tokens); user-defined ones are matched verbatim only.
    added = [AddedToken(tokens[i], special=(t == _TOKEN_TYPE_CONTROL), normalized=False)
             for i, t in enumerate(types) if t in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)]
    tokenizer.add_tokens(added)

    def token(key):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    if add_bos:
        bos_id = vocab[bos]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )

    special = {k: v for k, v in
               {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}.items() if v}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": int(meta.get("llama.context_length", 4096)),
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    if "tokenizer.chat_template" in meta:
        tokenizer_config["chat_template"] = meta["tokenizer.chat_template"]
    return {
        "tokenizer.json": tokenizer.to_str(),
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2, ensure_ascii=False),
        "special_tokens_map.json": json.dumps(special, indent=2, ensure_ascii=False),
    }


# --------------------------------------------------------------------------
# Writing


def _write_atomically(out_dir: Path, config: dict, weights: dict,
                      tokenizer_files: dict[str, str], source: dict) -> None:
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
    shards, current, size = [], {}, 0
    for key in sorted(weights):
        nbytes = weights[key].nbytes
        if current and size + nbytes > _SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key] = weights[key]
        size += nbytes
    shards.append(current)

    if len(shards) == 1:
        mx.save_safetensors(str(folder / "model.safetensors"), shards[0], metadata={"format": "mlx"})
        return
    index = {"metadata": {"total_size": sum(a.nbytes for a in weights.values())}, "weight_map": {}}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        mx.save_safetensors(str(folder / name), shard, metadata={"format": "mlx"})
        index["weight_map"].update(dict.fromkeys(shard, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
