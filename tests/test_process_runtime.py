"""The worker-process runtime: same answers as thread mode, and a worker that
can crash, hang or print garbage without taking the kernel (or the protocol)
down.

Most tests use the tiny random llama (hundreds of tokens per second); the
SmolLM2 comparison is marked ``model``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from mlx_magic.errors import WorkerError
from mlx_magic.runtime.process import rpc
from mlx_magic.runtime.process.runtime import ProcessRuntime, describe_exit
from mlx_magic.vocabulary.values import (
    Failed,
    Finished,
    GenerationRequest,
    ModelReady,
    PrefixCacheSettings,
    SamplingParams,
    TokenChunk,
)

GB = 1 << 30
# A prompt for which the tiny llama does not stop early (it never emits its
# end-of-turn token within a few thousand greedy steps).
LONG = SamplingParams(max_tokens=4000)


def hooks_env(hooks):
    env = dict(os.environ)
    env["MLX_MAGIC_WORKER_TEST_HOOKS"] = hooks
    return env


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    from mlx_magic.models.resolve import resolve_model

    return resolve_model(str(tiny_llama))


@pytest.fixture(scope="module")
def runtime():
    runtime = ProcessRuntime(8 * GB, env=hooks_env("debug"))
    yield runtime
    runtime.stop()


def request(spec, prompt="Tell me about dogs.", max_tokens=48, **kwargs):
    return GenerationRequest(
        model=spec, prompt=prompt, sampling=SamplingParams(max_tokens=max_tokens), **kwargs
    )


def collect(job, timeout=120.0):
    """All events of ``job`` up to its last one: (chunks, last event, others)."""
    chunks, others = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = job.next_event(0.5)
        if event is None:
            continue
        if isinstance(event, TokenChunk):
            chunks.append(event)
        elif isinstance(event, (Finished, Failed)):
            return chunks, event, others
        else:
            others.append(event)
    raise AssertionError("the job did not end in time")


def first_chunk(job, timeout=60.0):
    """Wait for the first token chunk of ``job``; returns the events before it too."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = job.next_event(0.5)
        if event is None:
            continue
        seen.append(event)
        if isinstance(event, TokenChunk):
            return seen
        assert not isinstance(event, (Finished, Failed)), event
    raise AssertionError("no token arrived in time")


def run_ok(runtime, req, timeout=120.0):
    chunks, last, others = collect(runtime.generate(req), timeout)
    assert isinstance(last, Finished), last
    return chunks, last, others


def text_and_ids(chunks):
    return "".join(c.text for c in chunks), [i for c in chunks for i in c.token_ids]


# ---- same answers as thread mode ------------------------------------------------


def thread_answers(requests):
    from mlx_magic.runtime.thread import ThreadRuntime

    runtime = ThreadRuntime(8 * GB)
    try:
        return [run_ok(runtime, req) for req in requests]
    finally:
        runtime.stop()


def test_greedy_answers_match_thread_mode(runtime, tiny):
    requests = [
        request(tiny, "Tell me about dogs.", 64),
        request(tiny, "Once upon a time", 40, raw=True),
        request(
            tiny,
            "And cats?",
            32,
            system="Be brief.",
            history=(("Tell me about dogs.", "Dogs bark."),),
        ),
        request(tiny, "Probabilities, please.", 12, top_logprobs=3),
    ]
    expected = thread_answers(requests)
    for req, (want_chunks, want_last, _) in zip(requests, expected):
        chunks, last, others = run_ok(runtime, req)
        assert text_and_ids(chunks) == text_and_ids(want_chunks)
        # Chunk by chunk too (with per-token probabilities, lists and tuples
        # as they were): the kernel re-emits every batched chunk.
        assert chunks == want_chunks
        assert last.finish_reason == want_last.finish_reason
        assert last.stats.prompt_tokens == want_last.stats.prompt_tokens
        assert last.stats.generation_tokens == want_last.stats.generation_tokens
        assert isinstance(others[-1], ModelReady)


def test_the_lens_crosses_the_pipe_as_in_thread_mode(runtime, tiny):
    from mlx_magic.errors import UserError
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.vocabulary.lens import LensGrid, LensRequest

    req = request(tiny, "Tell me about dogs.", 5, history=(("Hi", "Hello."),))
    chunks, last, _ = run_ok(runtime, req)
    _, ids = text_and_ids(chunks)
    asked = LensRequest(req, tuple(ids), 3, last.stats.provenance["prompt_token_ids_sha256"])
    grid = runtime.lens(asked)
    assert isinstance(grid, LensGrid) and grid.token_ids == tuple(ids)
    assert [cell.top_ids[0] for cell in grid.rows[-1]] == ids  # greedy
    assert rpc.decode(rpc.encode(grid)) == grid
    thread = ThreadRuntime(8 * GB)
    try:
        assert thread.lens(asked) == grid  # the same numbers, float for float
    finally:
        thread.stop()
    # The worker's one line is the kernel's, as the same class.
    changed = LensRequest(req, tuple(ids), 3, "0" * 64)
    with pytest.raises(UserError, match="not the one the model read"):
        runtime.lens(changed)


def test_generate_together_interleaves_in_the_worker(runtime, tiny):
    from mlx_magic.runtime.thread import ThreadRuntime

    requests = [
        request(tiny, "Tell me about dogs.", 30),
        request(tiny, "Tell me about cats.", 20, raw=True),
    ]
    local = ThreadRuntime(8 * GB)
    try:
        want = [collect(job) for job in local.generate_together(requests)]
    finally:
        local.stop()
    got = [collect(job) for job in runtime.generate_together(requests)]
    for (chunks, last, _), (want_chunks, want_last, _) in zip(got, want):
        assert isinstance(last, Finished), last
        assert chunks == want_chunks and last.finish_reason == want_last.finish_reason


@pytest.mark.model
def test_greedy_smollm2_matches_thread_mode_with_non_ascii(runtime, capsys):
    from mlx_magic.models.resolve import resolve_model

    spec = resolve_model(None)
    requests = [
        request(spec, "What is the capital of France?", 12),
        request(spec, "Translate to English: « Grüße aus München, 東京 » 🚀", 16),
    ]
    expected = thread_answers(requests)
    for req, (want_chunks, want_last, _) in zip(requests, expected):
        before = runtime.pipe_stats()
        chunks, last, _ = run_ok(runtime, req)
        messages = runtime.pipe_stats()["event_messages"] - before["event_messages"]
        assert text_and_ids(chunks) == text_and_ids(want_chunks)
        assert last.stats.prompt_tokens == want_last.stats.prompt_tokens
    assert "Paris" in "".join(c.text for c in expected[0][0])
    with capsys.disabled():
        print(
            f"\n[SmolLM2: {last.stats.generation_tokens} tokens at "
            f"{last.stats.generation_tps:.1f} tok/s in {messages} pipe messages]"
        )


def test_frames_survive_stray_bytes_and_broken_frames():
    import io

    garbage = []
    stream = io.BytesIO(
        b"hello from a C library\n"
        + b"junk before a frame "
        + rpc.frame({"jsonrpc": "2.0", "method": "a"})
        + rpc.MAGIC
        + b"{not json\n"
        + rpc.MAGIC
        + b"[1, 2]\n"
        + rpc.frame({"jsonrpc": "2.0", "id": 7, "result": "Grüße \u2028 東京"})
        + b"trailing junk without a newline"
    )
    reader = rpc.FrameReader(stream, on_garbage=garbage.append)
    assert reader.read() == {"jsonrpc": "2.0", "method": "a"}
    assert reader.read() == {"jsonrpc": "2.0", "id": 7, "result": "Grüße \u2028 東京"}
    assert reader.read() is None
    assert len(garbage) == 5 and reader.frames == 2
    assert all(b < 128 for b in rpc.frame({"text": "東京 🚀\n"}))


# ---- the pipe ----------------------------------------------------------------------


def test_tokens_cross_the_pipe_in_batches(runtime, tiny, capsys):
    run_ok(runtime, request(tiny, max_tokens=4))  # warm
    before = runtime.pipe_stats()
    started = time.perf_counter()
    chunks, last, _ = run_ok(runtime, request(tiny, max_tokens=1500))
    took = time.perf_counter() - started
    after = runtime.pipe_stats()
    messages = after["event_messages"] - before["event_messages"]
    tokens = last.stats.generation_tokens
    assert len(chunks) == after["token_chunks"] - before["token_chunks"]
    # At most 512 tokens per message, about one message per 0.2 s.
    assert tokens / 512 <= messages < tokens / 8, (tokens, messages)
    with capsys.disabled():
        print(
            f"\n[pipe: {tokens} tokens at {last.stats.generation_tps:.0f} tok/s in "
            f"{messages} messages, {messages / took:.1f} messages/s]"
        )


def test_non_ascii_and_megabyte_messages_round_trip(runtime, tiny):
    text = 'Grüße, 東京, naïve café — 🚀\u2028\u0000 \ud800 "quotes" \\ \n\t'
    big = (text + "The quick brown fox. " * 7) * (1_000_000 // 200)
    assert len(big.encode("utf-8", "surrogatepass")) > 1_000_000
    sent = request(tiny, big, 1, system=text, history=((text, text),), raw=True)
    echoed = rpc.decode(runtime._call("debug.echo", {"value": rpc.encode(sent)}))
    assert echoed == sent


def test_megabyte_prompt_reaches_the_worker_and_is_refused_before_prefill(runtime, tiny):
    # 1 MB of text is ~0.7 M tokens, far beyond the tiny model's 8192-token
    # context: it crosses the pipe whole, and the worker refuses it in one line
    # (with its token count) before reading a single token, instead of
    # prefilling for minutes.
    prompt = "The quick brown fox jumps over the lazy dog, Grüße 東京. " * 17_000
    assert len(prompt.encode()) > 1_000_000
    started = time.monotonic()
    job = runtime.generate(
        GenerationRequest(
            model=tiny,
            prompt=prompt,
            raw=True,
            sampling=SamplingParams(max_tokens=1),
            prefix_cache=PrefixCacheSettings(enabled=False),
        )
    )
    chunks, last, _ = collect(job, timeout=120)
    assert isinstance(last, Failed) and last.user_error, last
    assert "reads at most 8,192" in last.message and "646,001 tokens" in last.message
    assert chunks == []
    assert time.monotonic() - started < 60
    run_ok(runtime, request(tiny, max_tokens=4))


def test_garbage_on_the_workers_stdout_does_not_break_the_protocol(tiny):
    clean = ProcessRuntime(8 * GB)
    noisy = ProcessRuntime(8 * GB, env=hooks_env("garbage"), forward_stderr=False)
    try:
        req = request(tiny, max_tokens=200)
        want, _, _ = run_ok(clean, req)
        got, last, _ = run_ok(noisy, req)
        assert [(c.text, c.token_ids) for c in got] == [(c.text, c.token_ids) for c in want]
        stats = noisy.pipe_stats()
        # print() and os.write(1, …) went to stderr, not the pipe ...
        assert any("garbage" in line for line in noisy.last_stderr)
        assert any("junk" in line for line in noisy.last_stderr)
        # ... and the raw junk put on the pipe itself (before every message that
        # carries tokens) was skipped.
        assert 0 < stats["garbage_in"] <= stats["event_messages"]
        run_ok(noisy, request(tiny, max_tokens=8))
    finally:
        clean.stop()
        noisy.stop()


# ---- cancel, crashes, hangs ---------------------------------------------------------------


def test_cancel_mid_stream_stops_promptly_and_the_next_request_works(runtime, tiny):
    job = runtime.generate(request(tiny, max_tokens=4000))
    first_chunk(job)
    time.sleep(0.3)
    job.cancel()
    cancelled_at = time.monotonic()
    chunks, last, _ = collect(job)
    took = time.monotonic() - cancelled_at
    assert isinstance(last, Finished) and last.finish_reason == "cancelled"
    assert 0 < last.stats.generation_tokens < 4000
    assert took < 1.0, took
    run_ok(runtime, request(tiny, max_tokens=8))


def test_kill_9_mid_stream_ten_times(tiny, capsys):
    runtime = ProcessRuntime(8 * GB)
    detect, recover = [], []
    try:
        run_ok(runtime, request(tiny, max_tokens=4))
        for _ in range(10):
            job = runtime.generate(request(tiny, max_tokens=4000))
            first_chunk(job)
            pid = runtime.pid
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            chunks, last, _ = collect(job, timeout=10)
            detect.append(time.monotonic() - killed_at)
            assert isinstance(last, Failed) and last.user_error
            assert "SIGKILL" in last.message and f"pid {pid}" in last.message
            assert "next cell restarts it" in last.message
            assert "\n" not in last.message
            chunks, done, _ = run_ok(runtime, request(tiny, max_tokens=8))
            recover.append(time.monotonic() - killed_at)
            assert runtime.pid != pid and done.stats.generation_tokens == 8
        assert max(detect) < 1.0, detect
        assert runtime.pipe_stats()["workers_started"] == 11
    finally:
        runtime.stop()
    with capsys.disabled():
        print(
            f"\n[kill -9: detected in {min(detect) * 1000:.0f}–{max(detect) * 1000:.0f} ms; "
            f"next answer (new worker, model loaded) after "
            f"{min(recover):.2f}–{max(recover):.2f} s]"
        )


@pytest.mark.parametrize(
    "sig, words",
    [
        (signal.SIGSEGV, "SIGSEGV (segmentation fault)"),
        (signal.SIGABRT, "aborted (SIGABRT)"),
    ],
)
def test_crash_names_the_signal(runtime, tiny, sig, words):
    job = runtime.generate(request(tiny, max_tokens=4000))
    first_chunk(job)
    os.kill(runtime.pid, sig)
    _, last, _ = collect(job, timeout=10)
    assert isinstance(last, Failed) and last.user_error
    assert words in last.message
    run_ok(runtime, request(tiny, max_tokens=4))


def test_exit_code_is_named_and_calls_fail_cleanly(runtime, tiny):
    run_ok(runtime, request(tiny, max_tokens=4))
    with pytest.raises(WorkerError, match="exited with code 3"):
        runtime._call("debug.exit", {"code": 3})
    assert runtime.status().running is False
    run_ok(runtime, request(tiny, max_tokens=4))
    assert describe_exit(-signal.SIGKILL).startswith("was killed with SIGKILL")


def test_hung_worker_is_killed_and_replaced(tiny, capsys):
    runtime = ProcessRuntime(
        8 * GB,
        env=hooks_env("debug"),
        ping_interval_s=0.2,
        idle_ping_timeout_s=1.0,
        busy_ping_timeout_s=1.0,
    )
    try:
        run_ok(runtime, request(tiny, max_tokens=4))
        pid = runtime.pid
        started = time.monotonic()
        with pytest.raises(WorkerError, match="stopped answering"):
            runtime._call("debug.hang")  # the worker's main loop stops reading
        took = time.monotonic() - started
        assert took < 3.0
        run_ok(runtime, request(tiny, max_tokens=4))
        assert runtime.pid != pid
    finally:
        runtime.stop()
    with capsys.disabled():
        print(f"\n[hung worker replaced after {took:.2f} s (ping every 0.2 s, timeout 1 s)]")


def test_restarts_are_bounded_until_restart(tiny):
    runtime = ProcessRuntime(8 * GB, max_restarts=2, restart_window_s=60)
    try:
        for _ in range(2):
            job = runtime.generate(request(tiny, max_tokens=4000))
            first_chunk(job)
            os.kill(runtime.pid, signal.SIGKILL)
            assert isinstance(collect(job, timeout=10)[1], Failed)
        _, last, _ = collect(runtime.generate(request(tiny, max_tokens=4)))
        assert isinstance(last, Failed) and last.user_error
        assert "crashed 2 times" in last.message and "%mlx restart" in last.message
        assert "stopped after 2 crashes" in runtime.status().kind
        pid = runtime.restart()
        assert runtime.status().kind == f"worker process (pid {pid})"
        run_ok(runtime, request(tiny, max_tokens=4))
    finally:
        runtime.stop()


# ---- control calls, restart, stop --------------------------------------------------------------


def test_status_models_restart_and_unload_all(runtime, tiny):
    info = runtime.load(tiny)
    assert info.key == tiny.key and info.kind == "text"
    status = runtime.status()
    assert status.kind == f"worker process (pid {runtime.pid})" and status.running
    assert [m.key for m in runtime.models()] == [tiny.key]
    assert runtime.clear_caches() >= 0
    runtime.set_memory_budget(4 * GB)
    assert runtime.status().memory_budget_bytes == 4 * GB
    old = runtime.pid
    new = runtime.restart()
    assert new != old and runtime.models() == []
    runtime.load(tiny)
    assert runtime.unload(None) == [tiny.key]
    # unload all ends the idle worker: its memory goes back to the system.
    assert runtime.status().running is False and runtime.pid is None
    assert runtime.models() == []
    _, last, others = run_ok(runtime, request(tiny, max_tokens=4))
    assert last.stats.warm is False
    assert runtime.status().memory_budget_bytes == 4 * GB


def test_load_errors_are_one_line_as_in_thread_mode(runtime, tiny):
    from mlx_magic.errors import ModelLoadError
    from mlx_magic.vocabulary.values import ModelSpec

    missing = ModelSpec(name="ghost", key="/no/such/model", path="/no/such/model")
    with pytest.raises(ModelLoadError, match="Could not load 'ghost' from /no/such/model"):
        runtime.load(missing)
    _, last, _ = collect(runtime.generate(request(missing)))
    assert isinstance(last, Failed) and last.user_error
    assert last.message.startswith("Could not load 'ghost'")
    run_ok(runtime, request(tiny, max_tokens=4))


def test_the_worker_exits_when_the_kernel_dies(tiny_llama):
    script = textwrap.dedent(f"""
        import os, signal
        from mlx_magic.runtime.process.runtime import ProcessRuntime
        from mlx_magic.models.resolve import resolve_model

        runtime = ProcessRuntime(1 << 30)
        runtime.load(resolve_model({str(tiny_llama)!r}))
        print(runtime.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == -signal.SIGKILL
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return  # exited; not yet reaped by the container's init
        except FileNotFoundError:
            pass  # no /proc (macOS), or just reaped
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the orphaned worker {pid} kept running")


def test_stop_during_a_job_shuts_the_worker_down_cleanly(tiny):
    runtime = ProcessRuntime(8 * GB)
    job = runtime.generate(request(tiny, max_tokens=4000))
    first_chunk(job)
    worker = runtime._worker
    process = worker.proc
    started = time.monotonic()
    runtime.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert process.returncode == 0  # it exited by itself, not by a signal
    _, last, _ = collect(job, timeout=5)
    assert isinstance(last, Finished) and last.finish_reason == "cancelled"
    assert not [t for t in worker.threads if t.is_alive()]
    assert not [
        t for t in threading.enumerate() if t.name.startswith(f"mlx_magic-worker-{process.pid}")
    ]


# ---- the kernel side never imports MLX ----------------------------------------------------------


def test_the_kernel_process_never_imports_mlx(tiny_llama):
    script = textwrap.dedent(f"""
        import sys
        from mlx_magic.runtime.process.runtime import ProcessRuntime
        from mlx_magic.models.resolve import resolve_model
        from mlx_magic.vocabulary.values import Finished, GenerationRequest, SamplingParams

        runtime = ProcessRuntime(1 << 30)
        spec = resolve_model({str(tiny_llama)!r})
        runtime.load(spec)
        job = runtime.generate(GenerationRequest(model=spec, prompt="Hi",
                                                 sampling=SamplingParams(max_tokens=5)))
        while not isinstance(event := job.next_event(60), Finished):
            assert event is not None and type(event).__name__ != "Failed", event
        runtime.status(); runtime.models(); runtime.clear_caches()
        runtime.stop()
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("mlx", "mlx_lm", "mlx_vlm")))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- %%mlx end to end ----------------------------------------------------------------------------


def test_mlx_cell_magic_through_a_worker(tiny_llama, capsys):
    from conftest import make_shell, run

    cell = f"%%mlx -m {tiny_llama} -n 24\nTell me about dogs."
    answers = []
    for mode in ("thread", "process"):
        shell = make_shell()
        shell.extension_manager.load_extension("mlx_magic")
        magics = shell.magics_manager.registry["MLXMagics"]
        if mode == "process":
            run(shell, "%mlx runtime process")
        try:
            run(shell, cell)
            answers.append(shell.user_ns["_mlx"])
            if mode == "process":
                capsys.readouterr()
                run(shell, "%mlx status")
                assert f"worker process (pid {magics.backend.pid})" in capsys.readouterr().out
                # The worker's memory samples cross the pipe for %mlx memory.
                (sample,) = magics.session.runtime.status().memory_log
                assert sample.kv_cache_bytes > 0 and sample.model == "tiny-llama"
                old_pid = magics.backend.pid
                run(shell, "%mlx restart")
                assert f"pid {magics.backend.pid}" in capsys.readouterr().out
                assert magics.backend.pid != old_pid
                run(shell, "%config MLXMagics.runtime = 'thread'")
                assert type(magics.backend).__name__ == "ThreadRuntime"
        finally:
            shell.extension_manager.unload_extension("mlx_magic")
            shell.clear_instance()
    thread, process = answers
    assert process.text == thread.text and process.text
    assert [t.id for t in process.tokens] == [t.id for t in thread.tokens]
    assert process.stats.generation_tokens == 24


def test_answer_now_is_heard_across_the_pipe(runtime, tiny_llama, tmp_path):
    # A template that opens the thinking block: the random model thinks until
    # max tokens unless "Answer now" closes the block, in the worker.
    from test_thinking import R1_STYLE, with_template

    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.thinking import CLOSE_TAG

    spec = resolve_model(str(with_template(tiny_llama, tmp_path / "r1", R1_STYLE)))
    job = runtime.generate(request(spec, "Hi", max_tokens=6000))
    text = first_chunk(job)[-1].text
    assert job.thinking_can_end  # the worker said the block can be ended
    job.end_thinking()
    while CLOSE_TAG not in text:
        event = job.next_event(60)
        assert isinstance(event, TokenChunk), event  # the block closed before the end
        text += event.text
    job.cancel()
    _, last, _ = collect(job)
    assert isinstance(last, Finished)
