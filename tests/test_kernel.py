"""%%mlx in a real Jupyter kernel (jupyter_client), as a frontend sees it."""

import time

import pytest

from kernel_helpers import displays, execute, stream_text

pytestmark = [pytest.mark.model, pytest.mark.kernel]


def test_answer_streams_with_footer_and_result(kernel):
    _, client = kernel
    reply, messages = execute(client, "%%mlx\nWhat is the capital of France?")
    assert reply["status"] == "ok"
    assert "Paris" in stream_text(messages)
    footers = [d for d in displays(messages) if "tok/s" in d.get("text/plain", "")]
    assert len(footers) == 1
    assert "smollm2" in footers[0]["text/plain"] and "mlx-magic-footer" in footers[0]["text/html"]
    reply, messages = execute(
        client, "print(_mlx.finish_reason, _mlx.stats.warm, 'Paris' in _mlx.text)"
    )
    assert stream_text(messages).strip() == "stop True True"


def test_frontend_messages_are_bounded_by_the_buffer_and_traffic_is_linear(kernel):
    _, client = kernel
    execute(client, "%config MLXMagics.stream_interval_ms = 500")
    try:
        started = time.monotonic()
        reply, messages = execute(
            client, "%%mlx -n 60 --raw\nThe history of the city of Rome begins"
        )
        elapsed = time.monotonic() - started
    finally:
        execute(client, "%config MLXMagics.stream_interval_ms = 200")
    assert reply["status"] == "ok"
    streams = [m for m in messages if m["msg_type"] == "stream"]
    _, check = execute(client, "print(_mlx.stats.generation_tokens, len(_mlx.text))")
    tokens, characters = map(int, stream_text(check).split())
    assert tokens == 60
    # Streamed: several updates; buffered: far fewer than one per token, and
    # no more than one per interval (plus the final flush and its newline).
    assert 3 <= len(streams) <= elapsed / 0.5 + 3
    assert len(streams) < tokens / 2
    # Linear traffic: the text is sent once, not resent on every update.
    streamed_chars = sum(len(m["content"]["text"]) for m in streams)
    assert streamed_chars <= characters + 2
    status_updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(status_updates) <= 3


def test_kernel_interrupt_cancels_and_the_next_cell_works(kernel):
    manager, client = kernel
    seen = []

    def interrupt_once_text_flows(message):
        if message["msg_type"] == "stream":
            seen.append(message)
            if len(seen) == 2:
                manager.interrupt_kernel()

    reply, messages = execute(
        client,
        "%%mlx -n 300\nWrite a very long essay about the history of Rome.",
        on_message=interrupt_once_text_flows,
    )
    assert reply["status"] == "error" and reply["ename"] == "GenerationInterrupted"
    errors = [m for m in messages if m["msg_type"] == "error"]
    # One line, not a traceback through the magic's code.
    assert errors[0]["content"]["traceback"] == [
        f"KeyboardInterrupt: {errors[0]['content']['evalue']}"
    ]
    footers = [d["text/plain"] for d in displays(messages) if "tok/s" in d.get("text/plain", "")]
    assert len(footers) == 1 and "cancelled" in footers[0]
    _, check = execute(client, "print(_mlx.finish_reason, _mlx.stats.generation_tokens < 300)")
    assert stream_text(check).strip() == "cancelled True"
    reply, messages = execute(client, "%%mlx -n 12\nWhat is the capital of France?")
    assert reply["status"] == "ok" and "Paris" in stream_text(messages)


def test_usage_error_is_one_line_in_the_kernel(kernel):
    _, client = kernel
    reply, messages = execute(client, "%%mlx -n 0\nhi")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    errors = [m for m in messages if m["msg_type"] == "error"]
    # IPython shows a UsageError as its message alone: no traceback frames.
    shown = "".join(errors[0]["content"]["traceback"]) if errors else ""
    assert "Traceback" not in shown and "File " not in shown
    reply, _ = execute(client, "%%mlx -n 2 --raw\nHello")
    assert reply["status"] == "ok"


PARAGRAPH = (
    "The Rhine begins in the Swiss Alps, flows through Germany and the Netherlands, "
    "and empties into the North Sea."
)


def answer_tokens(client, cell):
    """Run a cell; return (token ids, cached prompt tokens) of its answer."""
    reply, _ = execute(client, cell)
    assert reply["status"] == "ok", reply
    _, check = execute(
        client, "print([t.id for t in _mlx.tokens], _mlx.stats.cached_prompt_tokens)"
    )
    ids, cached = stream_text(check).rsplit("]", 1)
    return ids + "]", int(cached)


def test_prefix_cache_gives_identical_greedy_answers_and_reuses_prompts(kernel):
    _, client = kernel
    cells = {
        "first question": f"%%mlx -n 10\n{PARAGRAPH}\nWhere does the Rhine begin?",
        "second question": f"%%mlx -n 10\n{PARAGRAPH}\nWhere does the Rhine end?",
        "unrelated raw": "%%mlx -n 10 --raw\nA list of fruits: apple,",
    }
    execute(client, "%config MLXMagics.prefix_cache = False")
    without = {name: answer_tokens(client, cell) for name, cell in cells.items()}
    assert all(cached == 0 for _, cached in without.values())

    execute(client, "%config MLXMagics.prefix_cache = True")
    execute(client, "%mlx cache clear")
    order = ["first question", "second question", "first question", "unrelated raw"]
    with_cache = [(name, answer_tokens(client, cells[name])) for name in order]
    for name, (ids, _) in with_cache:
        assert ids == without[name][0], name  # token for token the same
    cached = [count for _, (_, count) in with_cache]
    assert cached[1] > 20  # template + paragraph reused by a different question
    assert cached[2] > cached[1]  # the same question again: all but the last token
    _, status = execute(client, "%mlx status")
    assert "Prefix cache of smollm2" in stream_text(status)
    reply, messages = execute(client, f"%%mlx -n 3\n{PARAGRAPH}\nWhere does the Rhine end?")
    footer = [d["text/plain"] for d in displays(messages) if "tok/s" in d.get("text/plain", "")][0]
    assert "cached)" in footer


def test_memory_is_a_plot_and_tables_in_the_notebook(kernel):
    _, client = kernel
    execute(client, "%%mlx -n 3\nHi")
    reply, messages = execute(client, "%mlx memory")
    assert reply["status"] == "ok"
    shown = displays(messages)
    assert any("image/png" in d for d in shown)  # the matplotlib figure
    tables = [d["text/html"] for d in shown if "text/html" in d]
    assert any("weights_mib" in t and "smollm2" in t for t in tables)
    assert any("kv_cache_mib" in t for t in tables)


def test_probability_view_shades_every_token(kernel):
    _, client = kernel
    reply, messages = execute(client, "%%mlx -n 6 --probs 4 --temp 0.7 --seed 3\nName a colour.")
    assert reply["status"] == "ok"
    views = [d for d in displays(messages) if "mlx-magic-probs" in d.get("text/html", "")]
    assert len(views) == 1
    # The "Branch here" picker follows the view.
    assert any("application/vnd.jupyter.widget-view+json" in d for d in displays(messages))
    html = views[0]["text/html"]
    _, check = execute(client, "print(len(_mlx.tokens))")
    assert html.count('class="mlx-magic-token"') == int(stream_text(check))
    assert "temperature 0.7" in html and "seed 3" in html
    assert "most likely at this step" in views[0]["text/plain"]
