"""The KV cache's form and size: ``--max-kv-size`` and ``--kv-bits`` reach
mlx-lm (its RotatingKVCache and QuantizedKVCache), show in the footer and keep
to the prefix cache's rules; a context whose KV cache cannot fit the machine
is refused in one line before it is read."""

import mlx_lm
import pytest

from conftest import magics_of, make_shell, one_line, run

PROMPT = " ".join(f"item {n} is a blue stone." for n in range(20))


@pytest.fixture(scope="module")
def llama64(tmp_path_factory):
    """A tiny llama whose heads have 64 numbers: a KV cache MLX can quantize."""
    from mlx_magic.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(
        tmp_path_factory.mktemp("models") / "tiny-llama-64", hidden_size=256, num_heads=4
    )


@pytest.fixture(scope="module")
def kv_shell(llama64):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_model = {str(llama64)!r}")
    run(shell, "%config MLXMagics.default_format = 'text'")
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


@pytest.fixture
def caches_seen(monkeypatch):
    """The KV caches and arguments mlx-lm's stream_generate was given (a spy:
    the real function runs); the cache list is mlx-lm's, changed in place."""
    seen = []
    real = mlx_lm.stream_generate

    def spy(model, tokenizer, prompt, **kwargs):
        seen.append(kwargs)
        return real(model, tokenizer, prompt, **kwargs)

    monkeypatch.setattr(mlx_lm, "stream_generate", spy)
    return seen


def test_max_kv_size_gives_mlx_lm_a_rotating_cache_kept_out_of_the_prefix_cache(
    kv_shell, caches_seen
):
    from mlx_lm.models.cache import RotatingKVCache

    cell = f"%%mlx -n 4 --max-kv-size 32\n{PROMPT}"
    run(kv_shell, cell)
    [kwargs] = caches_seen
    assert all(isinstance(layer, RotatingKVCache) for layer in kwargs["prompt_cache"])
    assert {layer.max_size for layer in kwargs["prompt_cache"]} == {32}
    result = kv_shell.user_ns["_mlx"]
    assert "KV cache last 32 tokens" in result.footer and result.stats.prompt_tokens > 100
    assert result.stats.kv_cache == "KV cache last 32 tokens"
    run(kv_shell, cell)  # the same prompt again: a rotating cache is no prompt's state
    assert kv_shell.user_ns["_mlx"].stats.cached_prompt_tokens == 0


def test_kv_bits_quantizes_the_cache_and_keeps_prefix_entries_of_its_own_form(
    kv_shell, caches_seen
):
    from mlx_lm.models.cache import QuantizedKVCache

    run(kv_shell, "%mlx cache clear")
    cell = f"%%mlx -n 4 --kv-bits 8\n{PROMPT} Which is first?"
    run(kv_shell, cell)
    kwargs = caches_seen[-1]
    assert (kwargs["kv_bits"], kwargs["quantized_kv_start"]) == (8, 0)
    assert all(isinstance(layer, QuantizedKVCache) for layer in kwargs["prompt_cache"])
    assert {layer.bits for layer in kwargs["prompt_cache"]} == {8}
    first = kv_shell.user_ns["_mlx"]
    assert "KV cache 8-bit" in first.footer
    run(kv_shell, cell)  # a quantized prompt state serves the same form again
    assert kv_shell.user_ns["_mlx"].stats.cached_prompt_tokens > 100
    run(kv_shell, f"%%mlx -n 4\n{PROMPT} Which is first?")  # but never a plain cache
    plain = kv_shell.user_ns["_mlx"]
    assert plain.stats.cached_prompt_tokens == 0 and plain.stats.kv_cache is None
    assert plain.stats.kv_cache_bytes > 2 * first.stats.kv_cache_bytes
    run(kv_shell, "%config MLXMagics.kv_bits = 4")  # the setting, for every cell
    try:
        run(kv_shell, "%%mlx -n 2\nHello")
        assert (
            caches_seen[-1]["kv_bits"] == 4 and "KV cache 4-bit" in kv_shell.user_ns["_mlx"].footer
        )
    finally:
        run(kv_shell, "%config MLXMagics.kv_bits = None")


def test_a_context_whose_kv_cache_cannot_fit_is_refused_in_one_line(kv_shell, monkeypatch):
    from mlx_magic.engine.kv_estimate import token_bytes

    run(kv_shell, "%%mlx -n 2\nHello")  # warm, so its weights' size is known
    [info] = magics_of(kv_shell).session.runtime.models()
    before = kv_shell.user_ns["_mlx"]
    per_token = 2 * token_bytes(
        {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 256}, 4, None
    )  # two layers, float32
    # A machine with room for the weights and 150 tokens of KV cache.
    monkeypatch.setenv("MLX_MAGIC_MACHINE_BYTES", str(info.memory_bytes + int(150 * per_token)))
    with pytest.raises(Exception) as caught:
        run(kv_shell, f"%%mlx -n 64\n{PROMPT}")
    message = one_line(caught)
    assert "KV cache would need about" in message
    assert "--max-kv-size" in message and "--kv-bits" in message
    assert kv_shell.user_ns["_mlx"] is before  # nothing ran
    run(kv_shell, f"%%mlx -n 64 --max-kv-size 64\n{PROMPT}")  # 64 tokens kept: it fits
    run(kv_shell, f"%%mlx -n 64 --kv-bits 4\n{PROMPT}")  # a sixth of the bytes: it fits
    assert kv_shell.user_ns["_mlx"].stats.generation_tokens > 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--max-kv-size 4", "--max-kv-size must be at least 16 tokens"),
        ("--max-kv-size 64 --draft smollm2", "--max-kv-size and --draft do not go together"),
        ("--max-kv-size 64 --kv-bits 8", "--max-kv-size and --kv-bits do not go together"),
    ],
)
def test_kv_flags_are_checked_in_one_line(kv_shell, line, expected):
    with pytest.raises(Exception) as caught:
        run(kv_shell, f"%%mlx -n 2 {line}\nHi")
    assert expected in one_line(caught)


def test_a_head_mlx_cannot_quantize_is_refused_in_one_line(llama_shell):
    with pytest.raises(Exception) as caught:
        run(llama_shell, "%%mlx -n 2 --kv-bits 8\nHi")  # heads of 16 numbers
    assert "cannot be quantized" in one_line(caught)
    run(llama_shell, "%%mlx -n 2\nHi")  # and the model answers as before


def test_the_kv_cache_form_is_in_the_provenance_and_replays(kv_shell):
    from mlx_magic.magics.provenance import request_from_record
    from mlx_magic.vocabulary.caching import KVCacheSettings

    run(kv_shell, "%%mlx -n 3 --kv-bits 4\nHello there")
    record = kv_shell.user_ns["_mlx"].provenance
    assert record["request"]["kv_cache"] == {"max_size": None, "bits": 4}
    assert request_from_record(record).kv_cache == KVCacheSettings(bits=4)
    record["request"]["kv_cache"] = {"max_size": None, "bits": 3}  # a hand-edited notebook
    with pytest.raises(ValueError, match="kv_cache bits must be 4, 8 or null"):
        request_from_record(record)


def test_a_quantized_state_goes_to_disk_and_comes_back_for_its_own_form(kv_shell, tmp_path):
    from mlx_lm.models.cache import QuantizedKVCache

    folder = tmp_path / "prompts"
    run(kv_shell, f"%config MLXMagics.disk_cache_dir = {str(folder)!r}")
    run(kv_shell, "%config MLXMagics.disk_cache_min_tokens = 64")
    cell = f"%%mlx -n 4 --kv-bits 8\n{PROMPT} Which is last?"
    try:
        run(kv_shell, cell)
        first = kv_shell.user_ns["_mlx"]
        run(kv_shell, "%mlx unload all")  # after the write; memory's prefix cache is gone
        [path] = folder.glob("*/*.safetensors")
        from mlx_lm.models.cache import load_prompt_cache

        assert all(isinstance(layer, QuantizedKVCache) for layer in load_prompt_cache(str(path)))
        run(kv_shell, cell)
        again = kv_shell.user_ns["_mlx"]
        assert again.stats.disk_prompt_tokens == again.stats.prompt_tokens - 1
        assert [t.id for t in again.tokens] == [t.id for t in first.tokens]
        run(kv_shell, "%mlx unload all")
        run(kv_shell, f"%%mlx -n 4\n{PROMPT} Which is last?")  # a plain cache: not that file
        assert kv_shell.user_ns["_mlx"].stats.disk_prompt_tokens == 0
    finally:
        run(kv_shell, "%config MLXMagics.disk_cache_min_tokens = 1024")
