"""Long prompts: refused before prefill when they cannot fit, read in steps
sized to the model's measured speed (a cancel stops within about a second),
with progress on the status line; a cell behind a busy runtime says so."""

import os
import random
import signal
import threading
import time

import pytest
from IPython.core.error import UsageError

from mlx_magic.display.views import TerminalView
from mlx_magic.errors import GenerationInterrupted

from conftest import magics_of, run


def unique_words(count, seed):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(6)) for _ in range(count))


def test_a_prompt_longer_than_the_context_is_refused_before_prefill(shell, tiny_llama):
    shell.user_ns["_mlx"] = "before"
    started = time.monotonic()
    with pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx -n 4 -m {tiny_llama}\n" + "word " * 9000)
    message = str(caught.value)
    assert type(caught.value) is UsageError and "\n" not in message
    assert "reads at most 8,192" in message and "tokens" in message
    assert time.monotonic() - started < 30
    assert shell.user_ns["_mlx"] == "before"
    assert magics_of(shell).session.runtime.status().busy is False


@pytest.mark.model
def test_a_long_prefill_shows_progress_and_stops_within_a_second(model_shell, monkeypatch):
    # A first prompt long enough to measure this machine's prompt speed.
    run(model_shell, "%%mlx -n 1 --raw\n" + unique_words(40, seed=1))
    progress = []
    second_step = threading.Event()

    def record(self, message):
        progress.append(message)
        if len(progress) == 2:
            second_step.set()

    monkeypatch.setattr(TerminalView, "progress", record)
    sent_at = []

    def interrupt():
        second_step.wait(120)
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    outcome = model_shell.run_cell("%%mlx -n 4 --raw\n" + unique_words(1500, seed=2))
    returned_at = time.monotonic()
    assert type(outcome.error_in_exec) is GenerationInterrupted
    assert "reading the prompt" in progress[0] and " / " in progress[0]
    assert returned_at - sent_at[0] < 3.0, progress
    runtime = magics_of(model_shell).session.runtime
    deadline = time.monotonic() + 2.0
    while runtime.status().busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.status().busy is False  # not still reading the prompt
    monkeypatch.undo()
    run(model_shell, "%%mlx -n 4\nWhat is the capital of France?")
    assert model_shell.user_ns["_mlx"].finish_reason in ("stop", "length")


def test_a_cell_behind_a_busy_runtime_says_what_it_waits_for(shell, tiny_llama, monkeypatch):
    seen = []
    monkeypatch.setattr(TerminalView, "progress", lambda self, message: seen.append(message))
    run(shell, f"%%mlx -b -n 400 -m {tiny_llama}\nTell a long story.")
    run(shell, f"%%mlx -n 2 -m {tiny_llama}\nHi")
    assert any("Waiting for the runtime" in message for message in seen), seen
    run(shell, "%mlx wait all")


def test_on_a_gpu_a_short_prompt_is_read_whole_not_resumed_from_the_prefix_cache():
    # Resuming a cached beginning runs other kernel shapes, which the CUDA
    # backend compiled for 30+ s on first use (an H100, 2026-12-06); a prompt
    # of one prefill step reads in milliseconds there. On a CPU it always pays.
    from mlx_magic.engine.stepping import GPU_PREFILL_STEP
    from mlx_magic.engine.text_generation import worth_a_prefix_lookup

    assert worth_a_prefix_lookup(40, gpu=False)
    assert not worth_a_prefix_lookup(40, gpu=True)
    assert not worth_a_prefix_lookup(GPU_PREFILL_STEP - 1, gpu=True)
    assert worth_a_prefix_lookup(GPU_PREFILL_STEP, gpu=True)
