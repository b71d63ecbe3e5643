"""%%mlx with the real embedded model (SmolLM2-135M) in a real InteractiveShell."""

import os
import signal
import threading
import time

import pytest
from IPython.core.error import UsageError

import mlx_magic
from mlx_magic.display.views import TerminalView

from conftest import magics_of, run, runtime_threads

pytestmark = pytest.mark.model

CAPITAL = "What is the capital of France?"


def test_capital_question_streams_paris_with_footer(model_shell, capsys):
    run(model_shell, f"%%mlx\n{CAPITAL}")
    printed = capsys.readouterr().out
    result = model_shell.user_ns["_mlx"]
    assert "Paris" in result.text
    assert result.text in printed
    assert result.finish_reason == "stop"
    assert result.model == "smollm2"
    assert result.prompt == CAPITAL
    stats = result.stats
    assert stats.prompt_tokens > 10  # the chat template adds a system prompt
    assert stats.generation_tokens == len(result.tokens) > 0
    assert stats.generation_tps > 0 and stats.prompt_tps > 0
    assert stats.ttft_s is not None and stats.ttft_s > 0
    assert stats.peak_memory_gb > 0
    assert stats.warm is True and stats.load_s == 0
    footer = printed.strip().splitlines()[-1]
    for piece in ["tokens", "tok/s", "prompt", "first token", "peak", "smollm2", "warm"]:
        assert piece in footer
    # The token ids decode back to the text.
    tokenizer_text = "".join(token.text for token in result.tokens)
    assert tokenizer_text.strip() == result.text.strip()


def test_result_reprs(model_shell):
    run(model_shell, "%%mlx -n 3 --raw\nOnce upon a time")
    result = model_shell.user_ns["_mlx"]
    formatted, _ = model_shell.display_formatter.format(result)
    assert result.text in formatted["text/plain"]
    assert "tok/s" in formatted["text/plain"]
    assert "mlx-magic-footer" in formatted["text/html"]
    assert str(result) == result.text


def test_max_tokens_stops_at_length_and_out_variable(model_shell):
    run(model_shell, "%%mlx -n 5 -o story\nTell me a long story about a dragon.")
    result = model_shell.user_ns["story"]
    assert result is model_shell.user_ns["_mlx"]
    assert result.finish_reason == "length"
    assert result.stats.generation_tokens == 5


def test_settings_apply_and_flags_override_them(model_shell):
    magics = magics_of(model_shell)
    try:
        magics.max_tokens = 4
        run(model_shell, "%%mlx\nCount from one to twenty.")
        assert model_shell.user_ns["_mlx"].stats.generation_tokens == 4
        run(model_shell, "%%mlx -n 6\nCount from one to twenty.")
        assert model_shell.user_ns["_mlx"].stats.generation_tokens == 6
    finally:
        magics.max_tokens = 256


def test_seeded_sampling_repeats(model_shell):
    cell = "%%mlx -n 12 --temp 1.0 --top-p 0.95 --seed 7\nName a colour."
    run(model_shell, cell)
    first = model_shell.user_ns["_mlx"].text
    run(model_shell, cell)
    assert model_shell.user_ns["_mlx"].text == first


def test_system_prompt_and_raw_change_the_prompt(model_shell):
    run(model_shell, "%%mlx -n 1\nHi")
    templated = model_shell.user_ns["_mlx"].stats.prompt_tokens
    run(model_shell, '%%mlx -n 1 -s "Be brief."\nHi')
    with_system = model_shell.user_ns["_mlx"].stats.prompt_tokens
    run(model_shell, "%%mlx -n 1 --raw\nHi")
    raw = model_shell.user_ns["_mlx"].stats.prompt_tokens
    # SmolLM2's template adds a long default system prompt; ours is shorter,
    # and --raw sends the word alone.
    assert raw < with_system < templated


def test_bad_input_leaves_the_model_warm(model_shell, tmp_path):
    runtime = magics_of(model_shell).backend
    before = runtime.models()
    not_gguf = tmp_path / "broken.gguf"
    not_gguf.write_bytes(b"this is not a GGUF file at all")
    cells = [
        "%%mlx -n 0\nhi",
        "%%mlx -m /no/such/model\nhi",
        "%%mlx --temp -1\nhi",
        f"%%mlx -m {not_gguf}\nhi",
    ]
    for cell in cells:
        with pytest.raises(UsageError) as caught:
            run(model_shell, cell)
        assert type(caught.value) is UsageError and "\n" not in str(caught.value)
    assert [m.key for m in runtime.models()] == [m.key for m in before]
    run(model_shell, "%%mlx -n 2\nHello")
    assert model_shell.user_ns["_mlx"].stats.warm is True


def event_after_writes(monkeypatch, count):
    """An event set once the terminal view has written ``count`` times (the
    answer is streaming): the moment a test interrupts."""
    reached = threading.Event()
    writes = []
    original_write = TerminalView.write

    def counting_write(self, text):
        original_write(self, text)
        writes.append(text)
        if len(writes) == count:
            reached.set()

    monkeypatch.setattr(TerminalView, "write", counting_write)
    return reached


def test_interrupt_stops_promptly_and_the_next_cell_works(model_shell, monkeypatch):
    """A real SIGINT, as the kernel's interrupt sends, arriving mid-stream."""
    third_write = event_after_writes(monkeypatch, 3)
    sent_at = []

    def interrupt_after_third_write():
        third_write.wait(60)
        sent_at.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_third_write, daemon=True).start()
    outcome = model_shell.run_cell("%%mlx -n 200\nWrite a long essay about the history of Rome.")
    returned_at = time.perf_counter()
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)
    result = model_shell.user_ns["_mlx"]
    assert result.finish_reason == "cancelled"
    assert 3 <= result.stats.generation_tokens < 200
    # One token step of this model is about 0.1 s here; allow for a slow CI.
    assert returned_at - sent_at[0] < 2.0
    monkeypatch.undo()
    run(model_shell, f"%%mlx -n 12\n{CAPITAL}")
    after = model_shell.user_ns["_mlx"]
    assert after.finish_reason in ("stop", "length") and "Paris" in after.text
    assert after.stats.warm is True
    assert len(runtime_threads()) == 1


def test_a_burst_of_interrupts_still_keeps_the_answer(model_shell, monkeypatch, capsys):
    """Four interrupts 25 ms apart (hammering the stop button): the first stops the
    generation, the others land while it drains and are held; one line, the footer
    and the partial answer in _mlx, as for a single interrupt."""
    from mlx_magic.errors import GenerationInterrupted

    third_write = event_after_writes(monkeypatch, 3)

    def hammer():
        third_write.wait(60)
        for _ in range(4):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.025)

    model_shell.user_ns["_mlx"] = "before"
    threading.Thread(target=hammer, daemon=True).start()
    outcome = model_shell.run_cell("%%mlx -n 200\nWrite a long essay about the history of Rome.")
    assert type(outcome.error_in_exec) is GenerationInterrupted
    result = model_shell.user_ns["_mlx"]
    assert result != "before" and result.finish_reason == "cancelled"
    assert "cancelled" in capsys.readouterr().out  # the footer
    time.sleep(0.2)  # nothing is left to arrive
    monkeypatch.undo()
    run(model_shell, f"%%mlx -n 12\n{CAPITAL}")
    assert "Paris" in model_shell.user_ns["_mlx"].text


def test_gpu_lock_pauses_generation_between_tokens(model_shell):
    """User code holding mlx_magic.gpu_lock never overlaps a token step."""
    from mlx_magic.vocabulary.values import GenerationRequest, SamplingParams, TokenChunk

    magics = magics_of(model_shell)
    spec = magics.resolve(None)
    job = magics.backend.generate(
        GenerationRequest(
            model=spec, prompt="Once upon a time", raw=True, sampling=SamplingParams(max_tokens=40)
        )
    )
    tokens = 0
    while tokens < 3:
        event = job.next_event(30)
        assert event is not None
        tokens += isinstance(event, TokenChunk)
    with mlx_magic.gpu_lock:
        time.sleep(0.3)  # let any step in flight finish and report
        while job.next_event(0.05) is not None:
            pass
        assert job.next_event(1.0) is None  # nothing is generated while we hold it
    event = job.next_event(30)
    assert isinstance(event, TokenChunk)  # and generation resumes after
    job.cancel()
    while type(event).__name__ != "Finished":
        event = job.next_event(30)
    assert event.finish_reason == "cancelled"


def test_status_and_models_commands(model_shell, capsys):
    run(model_shell, "%mlx models")
    listing = capsys.readouterr().out
    assert "smollm2" in listing and "text" in listing and "GiB" in listing
    run(model_shell, "%mlx status")
    status = capsys.readouterr().out
    assert "thread in the kernel, running, idle" in status
    assert "GPU lock: free" in status
    assert "Warm models: 1" in status
    # One unit everywhere: GiB (1024³ bytes): the setting's number is the budget
    # shown (its default follows the machine: half its memory).
    budget = magics_of(model_shell).memory_budget_gb
    assert f"GiB of a {budget:.1f} GiB budget" in status and " GB" not in status


def test_terminal_prints_tokens_as_they_come(model_shell, monkeypatch):
    writes = []
    original_write = TerminalView.write

    def counting_write(self, text):
        writes.append(text)
        original_write(self, text)

    monkeypatch.setattr(TerminalView, "write", counting_write)
    run(model_shell, "%%mlx -n 8 --raw\nThe numbers one, two, three")
    result = model_shell.user_ns["_mlx"]
    # No batching in a terminal: one write per token that produced text.
    assert len(writes) >= result.stats.generation_tokens - 1
    assert "".join(writes) == result.text


def test_probabilities_of_greedy_tokens(model_shell, capsys):
    import math

    run(model_shell, f"%%mlx -n 8 --probs 3\n{CAPITAL}")
    result = model_shell.user_ns["_mlx"]
    printed = capsys.readouterr().out
    assert result.tokens and all(token.logprob is not None for token in result.tokens)
    for token in result.tokens:
        assert len(token.top) == 3
        logprobs = [logprob for _, _, logprob in token.top]
        assert logprobs == sorted(logprobs, reverse=True)
        # Greedy decoding picks the most likely token.
        assert token.top[0][0] == token.id
        assert math.isclose(token.top[0][2], token.logprob, abs_tol=1e-5)
        assert 0 < math.exp(token.logprob) <= 1
    assert "temperature 0" in printed and "most likely at this step" in printed
    run(model_shell, "%%mlx -n 3\nHi")
    assert all(
        token.logprob is None and token.top == [] for token in model_shell.user_ns["_mlx"].tokens
    )
