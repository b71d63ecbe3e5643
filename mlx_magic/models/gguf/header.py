"""Reading a GGUF header without decoding tensors, and what the converter accepts.

Imports no MLX: resolving a ``.gguf`` model name happens in the kernel.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from mlx_magic.errors import UnsupportedGGUF
from mlx_magic.models.gguf.tokenizer import _PRE_TOKENIZERS

# Bump when the output layout changes, so cached conversions are redone.
_FORMAT_VERSION = 1

# ggml tensor type ids (ggml.h) -> names, for error messages.
_GGML_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
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


# Header reading and checks


def _read_header(path: Path) -> tuple[dict, dict[str, str]]:
    """Read a GGUF header without decoding tensors.

    Returns (scalar metadata values, {tensor name: ggml type name}); array
    values are skipped. Raises UnsupportedGGUF if this is not a GGUF file.
    """
    value_formats = {
        0: "B",
        1: "b",
        2: "H",
        3: "h",
        4: "I",
        5: "i",
        6: "f",
        7: "?",
        10: "Q",
        11: "q",
        12: "d",
    }
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UnsupportedGGUF(f"{path.name} is not a GGUF file (no GGUF magic bytes)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = 4

            def take(fmt: str) -> Any:
                nonlocal pos
                values = struct.unpack_from("<" + fmt, buf, pos)
                pos += struct.calcsize("<" + fmt)
                return values[0] if len(values) == 1 else values

            def string() -> str:
                nonlocal pos
                n = take("Q")
                pos += n
                if pos > len(buf):
                    raise struct.error("string runs past end of file")
                return bytes(buf[pos - n : pos]).decode("utf-8", "replace")

            def skip(vtype: int) -> None:
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
    bad = Counter(
        t for t in tensor_types.values() if t not in _SUPPORTED_TYPES | _NATIVE_ONLY_TYPES
    )
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
