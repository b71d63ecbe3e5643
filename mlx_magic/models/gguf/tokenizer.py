"""The tokenizer files of a converted GGUF model (byte-level BPE vocabularies)."""

from __future__ import annotations

import json
from typing import Optional, cast

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


# --------------------------------------------------------------------------
# Tokenizer


def _tokenizer_files(meta: dict) -> dict[str, str]:
    """Contents of tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)  # keep the first id if a token repeats
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    split_digits, pattern = _PRE_TOKENIZERS[meta.get("tokenizer.ggml.pre", "default")]
    steps: list[pre_tokenizers.PreTokenizer] = (
        [pre_tokenizers.Digits(individual_digits=True)] if split_digits else []
    )
    if pattern is None:
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    else:
        steps += [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()

    # Control tokens are special (skipped when decoding with
    # skip_special_tokens); user-defined ones are matched verbatim only.
    added = [
        AddedToken(tokens[i], special=(t == _TOKEN_TYPE_CONTROL), normalized=False)
        for i, t in enumerate(types)
        if t in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)
    ]
    tokenizer.add_tokens(added)

    def token(key: str) -> Optional[str]:
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    bos, eos, unk, pad = token("bos"), token("eos"), token("unknown"), token("padding")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    if add_bos:
        bos_id = vocab[cast(str, bos)]  # add_bos: bos is not None
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )

    special = {
        k: v
        for k, v in {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}.items()
        if v
    }
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
