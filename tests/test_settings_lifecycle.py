"""Settings and the extension's life: a refused value is forgotten, a stored bad
value never keeps the extension from loading, unrelated settings keep warm
models, and unloading really removes the magics."""

import os
import threading

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, make_shell, run


def runtime_threads():
    return [t for t in threading.enumerate() if t.name == "mlx_magic-runtime"]


def test_a_refused_config_value_is_forgotten_and_reload_works(shell, caplog):
    run(shell, "%config MLXMagics.max_tokens = -3")  # %config logs the refusal
    assert "max_tokens must be a positive integer" in caplog.text
    assert "max_tokens" not in shell.config.get("MLXMagics", {})
    run(shell, "%reload_ext mlx_magic")
    assert magics_of(shell).max_tokens == 256
    run(shell, "%config MLXMagics.max_tokens = 12")
    assert shell.config.MLXMagics.max_tokens == 12 and magics_of(shell).max_tokens == 12


def test_a_pasted_key_is_refused_forgotten_and_never_shown(shell, capsys, caplog):
    key = "sk-live-0123456789abcdef"
    run(shell, f"%config MLXMagics.api_key_env = {key!r}")
    out = capsys.readouterr()
    assert "NAME of an environment variable" in caplog.text
    assert key not in out.out + out.err + caplog.text
    assert "api_key_env" not in shell.config.get("MLXMagics", {})
    assert magics_of(shell).api_key_env is None


def test_a_stored_bad_value_is_ignored_with_one_line(capsys):
    shell = make_shell({"MLXMagics": {"max_tokens": -3, "temperature": 0.5}})
    try:
        shell.extension_manager.load_extension("mlx_magic")
        lines = [line for line in capsys.readouterr().out.splitlines() if "MLXMagics" in line]
        assert len(lines) == 1 and "max_tokens" in lines[0]
        assert magics_of(shell).max_tokens == 256 and magics_of(shell).temperature == 0.5
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_unload_removes_the_magics_and_load_brings_one_runtime(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%%mlx -n 2 -m {tiny_llama}\nHi")
    shell.extension_manager.unload_extension("mlx_magic")
    assert "mlx" not in shell.magics_manager.magics["cell"]
    assert "mlx_vision" not in shell.magics_manager.magics["cell"]
    assert "mlx" not in shell.magics_manager.magics["line"]
    with pytest.raises(UsageError, match="not found"):
        run(shell, f"%%mlx -n 2 -m {tiny_llama}\nHi")
    assert runtime_threads() == []
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%%mlx -n 2 -m {tiny_llama}\nHi")
    assert len(runtime_threads()) == 1
    shell.extension_manager.unload_extension("mlx_magic")
    assert runtime_threads() == []


def test_settings_unrelated_to_the_thread_runtime_keep_warm_models(shell, tiny_llama):
    run(shell, f"%mlx load {tiny_llama}")
    runtime = magics_of(shell).session.runtime
    run(shell, '%config MLXMagics.api_key_env = "PATH"')
    run(shell, '%config MLXMagics.endpoints = ["http://127.0.0.1:9"]')
    assert magics_of(shell).session.runtime is runtime
    assert [info.key for info in runtime.models()] == [str(tiny_llama)]


def test_a_new_system_prompt_on_a_conversation_is_refused_not_dropped(shell, tiny_llama):
    run(shell, f'%%mlx -n 2 -m {tiny_llama} -c trip -s "Be brief."\nHi')
    shell.user_ns["_mlx"] = "before"
    with pytest.raises(UsageError, match="keeps its system prompt"):
        run(shell, f'%%mlx -n 2 -m {tiny_llama} -c trip -s "Answer in French."\nHi again')
    assert shell.user_ns["_mlx"] == "before"
    conversation = magics_of(shell).session.conversations.get("trip")
    assert conversation.system == "Be brief." and len(conversation.turns) == 1
    run(shell, f'%%mlx -n 2 -m {tiny_llama} -c trip -s "Be brief."\nSame prompt is fine')
    assert len(conversation.turns) == 2


@pytest.mark.kernel
@pytest.mark.model
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc")
def test_memory_stays_flat_over_ten_reloads_in_a_kernel():
    # Each runtime once took a new OS thread, and with it a new malloc arena
    # whose freed memory the next one never reused: +155 MB per reload.
    from kernel_helpers import execute, printed, running_kernel

    rss = "[int(l.split()[1]) // 1024 for l in open('/proc/self/status') if 'VmRSS' in l][0]"
    with running_kernel("%load_ext mlx_magic") as (_, client):
        execute(client, "%%mlx -n 1 --raw\nHi", timeout=300)
        before = int(printed(client, rss))
        for _ in range(10):
            execute(client, "%reload_ext mlx_magic")
            reply, _ = execute(client, "%%mlx -n 1 --raw\nHi", timeout=300)
            assert reply["status"] == "ok"
        after = int(printed(client, rss))
        threads = printed(
            client,
            "sorted(t.name for t in __import__('threading').enumerate() if 'mlx_magic' in t.name)",
        )
    assert after - before < 200, (before, after)  # was +1,265 MB (281 → 1,535)
    assert threads == "['mlx_magic-runtime']"


# Every setting a profile may hold, including those the runtime observes
# (``memory_budget_gb``, ``runtime``, the remote ones): traitlets applies them
# while the magics are being built, before their session exists.
_PROFILE = {
    "memory_budget_gb": 16.0,
    "max_tokens": 12,
    "runtime": "process",
    "endpoints": ["http://127.0.0.1:9/v1"],
    "api_key_env": "MLX_MAGIC_TEST_KEY",
    "connect_timeout_s": 2.0,
    "first_token_timeout_s": 30.0,
}


def test_settings_from_a_profile_apply_when_the_extension_loads():
    shell = make_shell({"MLXMagics": dict(_PROFILE)})
    try:
        shell.extension_manager.load_extension("mlx_magic")
        magics = magics_of(shell)
        for name, value in _PROFILE.items():
            assert getattr(magics, name) == value, name
        assert "mlx" in shell.magics_manager.magics["cell"]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
    assert runtime_threads() == []


def test_a_setting_then_load_ext_then_a_cell_answers(tiny_llama):
    shell = make_shell()
    try:
        run(shell, "%config MLXMagics.memory_budget_gb = 4")
        run(shell, "%load_ext mlx_magic")
        assert magics_of(shell).memory_budget_gb == 4
        run(shell, f"%%mlx -n 2 -m {tiny_llama} -o answer\nHi")
        assert shell.user_ns["answer"].stats.generation_tokens == 2
        # A setting the live runtime observes, then a reload: the magics stay.
        run(shell, "%config MLXMagics.memory_budget_gb = 6")
        run(shell, "%reload_ext mlx_magic")
        assert magics_of(shell).memory_budget_gb == 6
        run(shell, f"%%mlx -n 2 -m {tiny_llama} -o again\nHi")
        assert shell.user_ns["again"].stats.generation_tokens == 2
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
    assert runtime_threads() == []
