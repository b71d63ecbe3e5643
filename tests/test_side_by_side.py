"""Models side by side and sampling sweeps (%%mlx -m A -m B, several --temp/--seed)."""

import pytest
from IPython.core.error import UsageError

from conftest import run
from kernel_helpers import displays, execute, printed, running_kernel

pytestmark = pytest.mark.model

CAPITAL = "What is the capital of France?"


def test_two_models_answer_in_columns_like_they_do_alone(model_shell, tiny_llama, capsys):
    run(model_shell, f"%%mlx -n 8\n{CAPITAL}")
    alone = model_shell.user_ns["_mlx"].text
    run(model_shell, f"%%mlx -m smollm2 -m {tiny_llama} -n 8 -o both\n{CAPITAL}")
    results = model_shell.user_ns["_mlx"]
    assert model_shell.user_ns["both"] is results
    assert [r.model for r in results] == ["smollm2", "tiny-llama"]
    # Taking turns token by token does not change a greedy answer.
    assert results[0].text == alone
    assert results[1].stats.generation_tokens == 8
    printed_text = capsys.readouterr().out
    assert "── smollm2 ──" in printed_text and "── tiny-llama ──" in printed_text


def test_sampling_sweep_is_repeatable_per_seed(model_shell, tiny_llama):
    cell = f"%%mlx -m {tiny_llama} -n 12 --temp 1.0 --seed 1 --seed 2\nOnce upon a time"
    run(model_shell, cell)
    first = [r.text for r in model_shell.user_ns["_mlx"]]
    run(model_shell, cell)
    second = [r.text for r in model_shell.user_ns["_mlx"]]
    assert first == second
    assert first[0] != first[1]
    assert [r.model for r in model_shell.user_ns["_mlx"]] == [
        "tiny-llama · seed 1",
        "tiny-llama · seed 2",
    ]


def test_side_by_side_refuses_chat_and_too_many_columns(model_shell, tiny_llama):
    with pytest.raises(UsageError, match="without --chat"):
        run(model_shell, f"%%mlx -m smollm2 -m {tiny_llama} --chat x\nHi")
    seeds = " ".join(f"--seed {i}" for i in range(7))
    with pytest.raises(UsageError, match="more than 6"):
        run(model_shell, f"%%mlx -m {tiny_llama} --temp 1 {seeds}\nHi")


@pytest.mark.kernel
def test_columns_stream_as_widgets_and_end_as_static_html(tiny_llama):
    with running_kernel("%load_ext mlx_magic") as (_, client):
        reply, messages = execute(
            client, f"%%mlx -m {tiny_llama} -n 300 --temp 1.0 --seed 1 --seed 2 --raw\nOnce"
        )
        assert reply["status"] == "ok"
        widget_views = [
            d for d in displays(messages) if "application/vnd.jupyter.widget-view+json" in d
        ]
        assert len(widget_views) == 1  # one box of columns
        updates = [
            m
            for m in messages
            if m["msg_type"] == "comm_msg"
            and "mlx-magic-text" in str(m["content"]["data"].get("state", {}))
        ]
        assert len(updates) >= 2
        # Both columns stream before either finishes: two different text
        # widgets are updated before the first footer appears.
        comm_msgs = [m for m in messages if m["msg_type"] == "comm_msg"]
        first_footer = next(
            i
            for i, m in enumerate(comm_msgs)
            if "mlx-magic-footer" in str(m["content"]["data"].get("state", {}))
        )
        early = {
            m["content"]["comm_id"]
            for m in comm_msgs[:first_footer]
            if "mlx-magic-text" in str(m["content"]["data"].get("state", {}))
        }
        assert len(early) >= 2
        static = [
            m["content"]["data"]
            for m in messages
            if m["msg_type"] == "update_display_data"
            and "mlx-magic-columns" in m["content"]["data"].get("text/html", "")
        ]
        assert len(static) == 1  # the live box is replaced in place
        texts = printed(client, "[r.text for r in _mlx]")
        for text in eval(texts):
            assert text.replace("&", "&amp;").replace("<", "&lt;")[:10] in static[0]["text/html"]
