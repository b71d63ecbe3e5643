"""Loading, unloading and reloading the extension; the warm-model budget."""

import gc

import pytest

from conftest import make_shell, run, runtime_threads

pytestmark = pytest.mark.model


def live_llama_models():
    from mlx_lm.models.llama import Model

    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, Model)]


def test_reload_ten_times_leaks_no_thread_and_no_model():
    import mlx.core as mx

    # Other test modules may hold models of their own in fixtures.
    others = len(live_llama_models())
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    assert runtime_threads() == []  # the runtime starts on first use
    run(shell, "%%mlx -n 1 --raw\nHi")
    assert len(runtime_threads()) == 1
    baseline_memory = mx.get_active_memory()
    for _ in range(10):
        run(shell, "%reload_ext mlx_magic")
        run(shell, "%%mlx -n 1 --raw\nHi")
        assert len(runtime_threads()) == 1
        assert len(live_llama_models()) == others + 1
    # The same one model's worth of memory, give or take buffers.
    assert mx.get_active_memory() < baseline_memory * 1.5
    shell.extension_manager.unload_extension("mlx_magic")
    assert runtime_threads() == []
    assert len(live_llama_models()) == others


def test_unload_all_and_load_again(model_shell, capsys):
    run(model_shell, "%mlx unload all")
    assert "Unloaded 1 model" in capsys.readouterr().out
    magics = model_shell.magics_manager.registry["MLXMagics"]
    assert magics.backend.models() == []
    run(model_shell, "%%mlx -n 2 --raw\nHello")
    result = model_shell.user_ns["_mlx"]
    assert result.stats.warm is False and result.stats.load_s > 0
    run(model_shell, "%%mlx -n 2 --raw\nHello")
    assert model_shell.user_ns["_mlx"].stats.warm is True


def test_memory_budget_evicts_the_least_recently_used(model_shell):
    from mlx_magic.models.resolve import embedded_spec

    magics = model_shell.magics_manager.registry["MLXMagics"]
    run(model_shell, "%mlx load smollm2")
    live_before = len(live_llama_models())
    converted_folder = embedded_spec().path  # the same weights, as a plain folder
    try:
        # SmolLM2 holds about 0.1 GB: a 0.15 GB budget fits one copy, not two.
        run(model_shell, "%config MLXMagics.memory_budget_gb = 0.15")
        run(model_shell, f"%mlx load {converted_folder}")
        keys = [info.key for info in magics.backend.models()]
        assert keys == [converted_folder]
        run(model_shell, f"%%mlx -n 2 --raw -m {converted_folder}\nHello")
        assert model_shell.user_ns["_mlx"].stats.warm is True
        assert (
            len(live_llama_models()) == live_before
        )  # the first copy was freed, not just forgotten
    finally:
        run(model_shell, "%config MLXMagics.memory_budget_gb = 8.0")
        run(model_shell, f"%mlx unload {converted_folder}")


SCRIPT = """
import sys
from mlx_magic.vocabulary.values import Finished, GenerationRequest, ModelSpec, SamplingParams
from mlx_magic.runtime.thread import ThreadRuntime
path = sys.argv[1]
runtime = ThreadRuntime(1 << 30)
job = runtime.generate(GenerationRequest(
    model=ModelSpec(name="tiny", key=path, path=path), prompt="Hi",
    sampling=SamplingParams(max_tokens=3)))
while not isinstance(job.next_event(30), Finished):
    pass
runtime.stop()
print("stopped")
"""


def test_a_script_that_stops_the_runtime_and_exits_exits_cleanly(tiny_llama):
    # The owner thread's MLX thread-local destructors used to run after the
    # interpreter began to shut down: the process aborted in 4 of 6 runs.
    import subprocess
    import sys

    for _ in range(4):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tiny_llama)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "stopped" and "terminate called" not in done.stderr
