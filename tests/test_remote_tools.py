"""``%%mlx --tools`` against a server: the tools go as OpenAI ``tools``, the
streamed ``tool_calls`` deltas become the same calls, steps and loop as a
local model's.

A small OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py) streams
two calls in one answer, their arguments split across chunks, then a plain
answer; it records what each request carried.
"""

import json
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from test_tools import ADD

from conftest import magics_of, one_line, run
from fake_openai import Recorder


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


def test_a_declined_call_is_told_to_the_server_s_model(shell, server):
    from mlx_magic.magics.options import CellOptions
    from mlx_magic.magics.tool_loop import run_tools_cell

    server.answers = [call_deltas(), answer("Fine.")]
    asked = []
    run_tools_cell(
        magics_of(shell).session,
        CellOptions(tools="add", max_tokens=64),
        "Add.",
        decide=lambda step: asked.append(step.arguments) or False,  # Skip, both times
    )
    assert asked == [{"a": 2, "b": 3}, {"a": 10, "b": -4}] and shell.user_ns["calls"] == []
    assert [step.state for step in shell.user_ns["_mlx"].steps] == ["skipped", "skipped"]
    told = posts(server)[1]["messages"][2:]
    assert [m["content"] for m in told] == ["The user declined this call; it did not run."] * 2


def test_whole_calls_without_an_index_and_object_arguments_are_read():
    # Some servers send each call whole in one delta, without an index, or the
    # arguments as an object rather than JSON text.
    from mlx_magic.runtime.remote.tool_wire import CallAssembler

    assembler = CallAssembler()
    assembler.take([{"id": "a", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}}])
    assembler.take([{"id": "b", "function": {"name": "add", "arguments": '{"a": 3, "b": 4}'}}])
    assembler.take([{"id": "c", "function": {"name": "add", "arguments": "[1, 2]"}}])
    found = assembler.found("  Two sums. ")
    assert found.content == "Two sums."
    assert [(c.id, c.name, c.arguments, c.error) for c in found.calls] == [
        ("a", "add", {"a": 1, "b": 2}, None),
        ("b", "add", {"a": 3, "b": 4}, None),
        ("c", "add", {}, "its arguments are not a JSON object"),
    ]


def test_show_prompt_is_one_line_in_remote_mode(shell, server):
    with pytest.raises(UsageError) as caught:
        run(shell, "%%mlx --tools add --auto --show-prompt\nAdd.")
    assert "--show-prompt needs a local model" in one_line(caught)
    assert posts(server) == []


def test_mlx_lm_server_renders_the_tools_and_tool_turns_as_thread_mode_does(tmp_path):
    """mlx-lm's own server takes the request as sent (tools, an assistant
    message with ``tool_calls`` whose arguments are JSON text, ``tool``
    messages): its prompt counts the same tokens as the local engine's, and
    greedy, its answer is the same words."""
    from test_remote_runtime import collect, end_server, free_port, request, start_server, tiny_spec

    from mlx_magic.runtime.remote.runtime import RemoteRuntime
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.testing.tiny_models import build_tiny_llama
    from mlx_magic.vocabulary.tools import ToolCallsFound, ToolUse
    from mlx_magic.vocabulary.values import Finished

    model = build_tiny_llama(tmp_path / "hermes", tools="hermes")
    (tmp_path / "hub").mkdir()
    process, url = start_server(
        [sys.executable, "-m", "mlx_lm.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(free_port())],
        tmp_path / "server.log",
        "/v1/models",
        {"HF_HUB_CACHE": str(tmp_path / "hub")},
    )  # fmt: skip
    schema = {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
    call = {"id": "call_1_0", "type": "function",
            "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}  # fmt: skip
    turns = (
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1_0", "name": "add", "content": "5"},
    )
    req = request(tiny_spec(model), prompt="What is 2 + 3?", max_tokens=12,
                  tools=ToolUse(schemas=(schema,), turns=turns))  # fmt: skip
    answers = {}
    try:
        for name, runtime in (("remote", RemoteRuntime(url)), ("local", ThreadRuntime(1 << 30))):
            try:
                chunks, last, others = collect(runtime.generate(req))
            finally:
                runtime.stop()
            assert isinstance(last, Finished), last
            assert any(isinstance(event, ToolCallsFound) for event in others)
            answers[name] = ("".join(c.text for c in chunks), last.stats.prompt_tokens)
    finally:
        end_server(process)
    assert answers["remote"] == answers["local"]
    assert answers["local"][1] > 60  # the tool's schema and the turns are in the prompt


def test_mlx_lm_server_s_streamed_calls_run_and_the_loop_ends(shell, tmp_path):
    """End to end with mlx-lm's own server: its template gets the tools, its
    parser reads the (scripted) Hermes call, it streams ``tool_calls``; the
    function runs, its result goes back, the server's next answer ends the loop."""
    from test_remote_runtime import end_server, free_port, start_server

    from mlx_magic.testing.tiny_models import build_tiny_llama

    model = build_tiny_llama(tmp_path / "hermes", tools="hermes")
    (tmp_path / "hub").mkdir()
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    process, url = start_server(
        [sys.executable, str(Path(__file__).with_name("scripted_lm_server.py")), "--model",
         str(model), "--host", "127.0.0.1", "--port", str(free_port())],
        tmp_path / "server.log",
        "/v1/models",
        {"HF_HUB_CACHE": str(tmp_path / "hub"),
         "MLX_MAGIC_TEST_ANSWERS": json.dumps([call, "It is 5."])},
    )  # fmt: skip
    try:
        run(shell, ADD)
        run(shell, f"%mlx connect {url}")
        run(shell, f"%%mlx -m {model} -n 64 -f text --tools add --auto\nWhat is 2 + 3?")
        result = shell.user_ns["_mlx"]
        assert shell.user_ns["calls"] == [(2, 3)]
        assert [(s.name, s.arguments, s.state, s.result) for s in result.steps] == [
            ("add", {"a": 2, "b": 3}, "ran", 5)
        ]
        assert result.text == "It is 5."
    finally:
        run(shell, "%mlx disconnect")
        end_server(process)
