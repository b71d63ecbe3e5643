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


def _wait_until(condition, what, limit_s=300.0):
    """Wait for an event (a condition that becomes true), failing after a long limit."""
    import time

    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_reload_during_a_background_map_stops_the_whole_run(tiny_llama):
    from conftest import magics_of

    others = set(runtime_threads())  # the module's model_shell has one
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "words = [f'w{i}' for i in range(24)]")
        run(shell, f"%%mlx -m {tiny_llama} -b --map words -n 3000 --batch-size 4\nSay {{item}}")
        session = magics_of(shell).session
        [entry] = session.jobs.all()
        _wait_until(lambda: session.runtime.status().busy, "the batch started")
        run(shell, "%reload_ext mlx_magic")
        # Every sequence of the batch was cancelled (not just the first), and
        # the run ended before the reload returned: nothing goes on unseen.
        assert entry.done.is_set()
        table = entry.result if entry.result is not None else shell.user_ns.get("_mlx")
        rows = getattr(table, "rows", [])
        assert not any(row.get("finish_reason") == "length" for row in rows)
        assert set(runtime_threads()) <= others  # the old runtime's thread is parked
        run(shell, f"%%mlx -m {tiny_llama} -n 2 -o after\nHi")
        assert shell.user_ns["after"].stats.generation_tokens == 2
        assert shell.user_ns["_mlx"] is shell.user_ns["after"]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
    assert set(runtime_threads()) <= others


def test_an_interrupted_wait_behind_a_generation_withdraws_the_command(tiny_llama):
    import signal
    import threading

    from mlx_magic.errors import GenerationInterrupted
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.vocabulary.values import Finished, GenerationRequest, SamplingParams

    runtime = ThreadRuntime(8 << 30)
    try:
        spec = resolve_model(str(tiny_llama))
        runtime.load(spec)
        long = runtime.generate(
            GenerationRequest(model=spec, prompt="Hi", sampling=SamplingParams(max_tokens=100_000))
        )
        _wait_until(lambda: runtime.status().busy, "the generation started")
        main = threading.main_thread().ident

        def interrupt_once_the_unload_waits():
            _wait_until(lambda: runtime.status().queued >= 1, "the unload is queued")
            signal.pthread_kill(main, signal.SIGINT)  # as the kernel's stop button does

        threading.Thread(target=interrupt_once_the_unload_waits, daemon=True).start()
        with pytest.raises(GenerationInterrupted, match="the command was not run"):
            runtime.unload(None)
        long.cancel()
        while not isinstance(long.next_event(timeout=300), (Finished, type(None))):
            pass
        # The withdrawn unload never ran behind the user's back: the model is warm.
        assert [info.key for info in runtime.models()] == [spec.key]
    finally:
        runtime.stop()


def test_a_reload_in_one_shell_leaves_another_shells_runtime_in_its_hands(tiny_llama):
    # %reload_ext re-runs mlx_magic/__init__.py: its registry of magics must
    # survive, or the other shell's unload would leave its runtime running.
    others = set(runtime_threads())
    first, second = make_shell(), make_shell()
    for shell in (first, second):
        shell.extension_manager.load_extension("mlx_magic")
    run(second, f"%%mlx -m {tiny_llama} -n 1\nHi")
    assert len(set(runtime_threads()) - others) == 1
    run(first, "%reload_ext mlx_magic")
    second.extension_manager.unload_extension("mlx_magic")
    first.extension_manager.unload_extension("mlx_magic")
    assert set(runtime_threads()) <= others
