"""``%%mlx --tools`` against a server: the tools go as OpenAI ``tools``, the
streamed ``tool_calls`` deltas become the same calls, steps and loop as a
local model's.

A small OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py) streams
two calls in one answer, their arguments split across chunks, then a plain
answer; it records what each request carried.
"""

import json

import pytest
from IPython.core.error import UsageError

from conftest import one_line, run
from fake_openai import Recorder

ADD = '''
calls = []
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    calls.append((a, b))
    return a + b
'''


def call_deltas():
    """Two calls in one answer, as servers stream them: the name and id first,
    the arguments in pieces, the second call interleaved after the first."""

    def piece(index, **fields):
        function = {k: v for k, v in fields.items() if k in ("name", "arguments")}
        delta = {"index": index, "function": function}
        if "id" in fields:
            delta.update(id=fields["id"], type="function")
        return {"tool_calls": [delta]}, None

    return [
        ({"role": "assistant", "content": "Let me add."}, None),
        piece(0, id="call_AbC123xyz", name="add", arguments=""),
        piece(0, arguments='{"a": '),
        piece(0, arguments='2, "b"'),
        piece(0, arguments=": 3}"),
        piece(1, id="call_Def456uvw", name="add", arguments='{"a": 10,'),
        piece(1, arguments=' "b": -4}'),
        ({}, "tool_calls"),
    ]


def answer(text):
    words = text.split(" ")
    pieces = words[:1] + [" " + word for word in words[1:]]
    return [({"content": piece}, None) for piece in pieces] + [({}, "stop")]


@pytest.fixture
def server(shell):
    server = Recorder()
    run(shell, ADD)
    run(shell, f"%mlx connect {server.url}")
    yield server
    run(shell, "%mlx disconnect")
    server.close()


def posts(server):
    return [body for command, _, _, body in server.requests if command == "POST"]


def test_a_server_s_calls_run_and_their_results_go_back(shell, server, capsys):
    server.answers = [call_deltas(), answer("It is 5 and 6.")]
    run(shell, "%%mlx -n 64 -f text --tools add --auto\nWhat are 2 + 3 and 10 - 4?")
    assert shell.user_ns["calls"] == [(2, 3), (10, -4)]  # ran with the parsed arguments
    result = shell.user_ns["_mlx"]
    assert result.text == "It is 5 and 6." and result.finish_reason == "stop"
    assert [(s.name, s.arguments, s.state, s.result, s.step) for s in result.steps] == [
        ("add", {"a": 2, "b": 3}, "ran", 5, 1),
        ("add", {"a": 10, "b": -4}, "ran", 6, 1),
    ]
    first, second = posts(server)  # two requests: the loop ended with the plain answer
    (schema,) = first["tools"]
    assert schema["type"] == "function" and schema["function"]["name"] == "add"
    assert schema["function"]["parameters"]["properties"]["a"]["type"] == "integer"
    assert [m["role"] for m in first["messages"]] == ["user"]
    assert second["tools"] == first["tools"]
    user, assistant, *results = second["messages"]
    assert user == first["messages"][0]
    assert assistant["role"] == "assistant" and assistant["content"] == "Let me add."
    assert [
        (c["id"], c["type"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in assistant["tool_calls"]
    ] == [
        ("call_AbC123xyz", "function", "add", {"a": 2, "b": 3}),
        ("call_Def456uvw", "function", "add", {"a": 10, "b": -4}),
    ]
    assert results == [
        {"role": "tool", "tool_call_id": "call_AbC123xyz", "content": "5"},
        {"role": "tool", "tool_call_id": "call_Def456uvw", "content": "6"},
    ]
    printed = capsys.readouterr().out
    assert "step 1 · add(a=2, b=3) → 5" in printed and "add(a=10, b=-4) → 6" in printed


def test_a_call_the_server_streams_to_a_function_not_offered_is_refused(shell, server):
    deltas = [
        ({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "rm", "arguments": "{}"}}]},
         "tool_calls"),
    ]  # fmt: skip
    server.answers = [deltas, answer("Sorry.")]
    run(shell, "%%mlx -n 64 --tools add --auto\nClean up.")
    (step,) = shell.user_ns["_mlx"].steps
    assert step.state == "refused" and shell.user_ns["calls"] == []
    (told,) = posts(server)[1]["messages"][2:]
    assert told["tool_call_id"] == "c1" and "no function 'rm' is offered" in told["content"]


def test_arguments_that_are_not_json_go_back_as_an_error(shell, server):
    broken = {"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a": 2,'}}
    server.answers = [[({"tool_calls": [broken]}, "tool_calls")], answer("Oops.")]
    run(shell, "%%mlx -n 64 --tools add --auto\nAdd.")
    (step,) = shell.user_ns["_mlx"].steps
    assert step.state == "invalid" and "did not parse" in step.error
    assert shell.user_ns["calls"] == []


def test_show_prompt_is_one_line_in_remote_mode(shell, server):
    with pytest.raises(UsageError) as caught:
        run(shell, "%%mlx --tools add --auto --show-prompt\nAdd.")
    assert "--show-prompt needs a local model" in one_line(caught)
    assert posts(server) == []
