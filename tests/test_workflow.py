"""Conversations, templating and formats in a real kernel with the embedded model."""

import pytest

from kernel_helpers import displays, execute, printed, stream_text

pytestmark = [pytest.mark.model, pytest.mark.kernel]


def test_three_turn_conversation_reuses_the_cache_and_keeps_the_transcript(kernel):
    _, client = kernel
    turns = [
        "My name is Ada. Say hello to me.",
        "What is the capital of France?",
        "What is my name?",
    ]
    cached = []
    for number, text in enumerate(turns, 1):
        reply, _ = execute(client, f"%%mlx -n 12 --chat trip\n{text}", cell_id=f"turn-{number}")
        assert reply["status"] == "ok"
        cached.append(int(printed(client, "_mlx.stats.cached_prompt_tokens")))
        assert (
            int(
                printed(
                    client,
                    "len(get_ipython().find_magic('mlx', 'cell').__self__"
                    ".session.conversations.get('trip').turns)",
                )
            )
            == number
        )
    # Turns 2 and 3 read the history from the prefix cache, not again.
    assert cached[1] > 30 and cached[2] > cached[1]
    reply, messages = execute(client, "%mlx chat trip")
    transcript = [d for d in displays(messages) if "text/markdown" in d][0]["text/markdown"]
    for text in turns:
        assert text in transcript
    assert transcript.count("**You (") == 3


def test_rerunning_an_earlier_turn_rewinds_the_conversation(kernel):
    _, client = kernel
    first = "Remember the number 7. Say OK."
    second = "What number did I ask you to remember?"
    execute(client, f"%%mlx -n 8 --chat rewind\n{first}", cell_id="r1")
    execute(client, f"%%mlx -n 8 --chat rewind\n{second}", cell_id="r2")
    execute(client, "%%mlx -n 8 --chat rewind\nAnd what is 2 + 2?", cell_id="r3")
    conversation = (
        "get_ipython().find_magic('mlx', 'cell').__self__.session.conversations.get('rewind')"
    )
    assert printed(client, f"len({conversation}.turns)") == "3"
    reply, _ = execute(client, f"%%mlx -n 8 --chat rewind\n{second}", cell_id="r2")
    assert reply["status"] == "ok"
    # Turn 2 was replaced and turn 3 dropped: no duplicate.
    assert printed(client, f"[t.cell_id for t in {conversation}.turns]") == "['r1', 'r2']"
    assert int(printed(client, "_mlx.stats.cached_prompt_tokens")) > 20


def test_switching_the_model_of_a_conversation_says_how_to_start_another(kernel, tiny_vlm):
    _, client = kernel
    execute(client, "%%mlx -n 2 --chat solo\nHi", cell_id="s1")
    reply, messages = execute(client, f"%%mlx -n 2 --chat solo -m {tiny_vlm}\nHi", cell_id="s2")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    assert "--chat NEW_NAME" in reply["evalue"]


def test_templating_fills_attributes_and_earlier_outputs(kernel):
    _, client = kernel
    execute(client, "class Frame:\n    shape = (3, 4)\ndf = Frame()")
    reply, _ = execute(client, "'Lyon'")
    out_number = reply["execution_count"]
    reply, _ = execute(
        client,
        f"%%mlx -n 2 --raw\nShape {{df.shape}}, city {{Out[{out_number}]}}, braces {{{{kept}}}}",
    )
    assert reply["status"] == "ok"
    assert printed(client, "_mlx.prompt") == "Shape (3, 4), city Lyon, braces {kept}"
    reply, _ = execute(client, "%%mlx -n 2\nTell me about {no_such_variable}")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    assert "no_such_variable" in reply["evalue"]
    reply, _ = execute(client, "%%mlx -n 2 --raw --no-interpolate\nKeep {this}")
    assert reply["status"] == "ok" and printed(client, "_mlx.prompt") == "Keep {this}"


def test_error_flag_appends_the_last_traceback(kernel, tiny_llama):
    _, client = kernel
    execute(client, "{}['missing_key']")
    # Only the prompt matters here: the tiny model reads it in milliseconds.
    reply, _ = execute(client, f"%%mlx -m {tiny_llama} -n 2 --error\nWhy did this fail?")
    assert reply["status"] == "ok"
    prompt = printed(client, "_mlx.prompt")
    assert "KeyError" in prompt and "missing_key" in prompt


def test_format_code_sets_the_next_input_without_running_it(kernel):
    _, client = kernel
    reply, _ = execute(
        client, "%%mlx -n 40 -f code\nWrite a Python function that adds two numbers."
    )
    assert reply["status"] == "ok"
    payloads = [p for p in reply.get("payload", []) if p.get("source") == "set_next_input"]
    assert len(payloads) == 1
    code = payloads[0]["text"]
    assert "def " in code and "```" not in code
    # Put in the next cell, not run: the function does not exist in the kernel.
    name = code.split("def ", 1)[1].split("(", 1)[0].strip()
    assert printed(client, f"{name!r} in globals()") == "False"


def test_format_json_parses_into_the_out_variable(kernel):
    _, client = kernel
    reply, _ = execute(
        client,
        '%%mlx -n 40 -f json -o person\nGive a JSON object with keys "name" and "age" for a '
        "person called Ann who is 30. Reply with JSON only.",
    )
    assert reply["status"] == "ok"
    assert printed(client, "person") == "{'name': 'Ann', 'age': 30}"
    reply, _ = execute(client, "%%mlx -n 5 -f json -o nothing\nSay hello.")
    assert reply["status"] == "error" and "not valid JSON" in reply["evalue"]
    assert printed(client, "type(_mlx.text).__name__") == "str"


def test_format_markdown_renders_the_answer(kernel):
    _, client = kernel
    reply, messages = execute(client, "%%mlx -n 20 -f markdown\nList two fruits as a bullet list.")
    assert reply["status"] == "ok"
    assert stream_text(messages) == ""  # rendered while it streamed, block by block
    finals = {}
    for message in messages:
        if message["msg_type"] in ("display_data", "update_display_data"):
            data = message["content"]["data"]
            if "text/markdown" in data:
                finals[message["content"]["transient"]["display_id"]] = data
    assert finals and all("text/plain" in data for data in finals.values())
    shown = "".join(data["text/markdown"] for data in finals.values())
    assert shown.replace("\n", "") == printed(client, "_mlx.text").replace("\n", "")


def test_session_stats_lists_every_generation(kernel):
    _, client = kernel
    count = int(
        printed(client, "len(get_ipython().find_magic('mlx', 'cell').__self__.session.rows)")
    )
    reply, messages = execute(client, "%mlx stats")
    table = [d for d in displays(messages) if "text/html" in d][0]
    assert table["text/html"].count("<tr>") == count + 1  # header + one row each
    assert f"{count} generations" in table["text/plain"]
    assert "cached" in table["text/plain"] and "ttft_s" in table["text/plain"]
    assert stream_text(messages) == ""
