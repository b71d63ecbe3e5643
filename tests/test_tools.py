"""``%%mlx --tools``: a local model calls notebook functions, step by step.

The tiny llama carries chat templates that declare tool calling in three
families' syntax (mlx_magic.testing.tiny_models.tool_templates), so mlx-lm
picks that family's own parser; scripted answers (forced through mlx-lm's
real generation path) write the calls. Each test checks what the function
received, what the model was told (the next prompt, as ``--show-prompt``
prints it), and that the loop ends.
"""

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, make_shell, one_line, run

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

def fail(reason: str) -> str:
    """Always fails.

    Args:
        reason: why
    """
    raise ValueError(f"no luck: {reason}")
'''

#: The call ``add(a=2, b=3)`` in each family's syntax, and how its result reads in the next prompt.
FAMILIES = {
    "hermes": (
        '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
        "<tool_response>\n5\n</tool_response>",
    ),
    "mistral": ('[TOOL_CALLS]add[ARGS]{"a": 2, "b": 3}', "[TOOL_RESULTS]5[/TOOL_RESULTS]"),
    "pythonic": (
        "<|tool_call_start|>[add(a=2, b=3)]<|tool_call_end|>",
        "<|im_start|>tool\n5<|im_end|>",
    ),
}


def hermes_call(name, arguments):
    import json

    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


@pytest.fixture(scope="module")
def tool_models(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_llama

    root = tmp_path_factory.mktemp("tool-models")
    return {family: build_tiny_llama(root / family, tools=family) for family in FAMILIES}


@pytest.fixture(scope="module")
def tools_shell(tool_models):
    """A shell whose default model is the Hermes-style tiny llama, with ``add`` and ``fail``."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_model = {str(tool_models['hermes'])!r}")
    run(shell, ADD)
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def tools_cell(shell, line, *answers, body="What is 2 + 3?"):
    from mlx_magic.testing.scripted import forced_answers

    shell.user_ns["calls"].clear()
    with forced_answers(*answers):
        return run(shell, f"%%mlx -n 200 -f text --show-prompt {line}\n{body}")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_s_call_runs_and_its_result_is_in_the_next_prompt(
    family, tools_shell, tool_models, capsys
):
    call, result_in_prompt = FAMILIES[family]
    rows = len(magics_of(tools_shell).session.rows)
    tools_cell(tools_shell, f"-m {tool_models[family]} --tools add --auto", call, "It is 5.")
    assert tools_shell.user_ns["calls"] == [(2, 3)]  # ran once, with the parsed arguments
    result = tools_shell.user_ns["_mlx"]
    assert result.text == "It is 5."
    (step,) = result.steps
    assert (step.name, step.arguments, step.state, step.result) == (
        "add",
        {"a": 2, "b": 3},
        "ran",
        5,
    )
    assert step.seconds >= 0
    assert len(magics_of(tools_shell).session.rows) == rows + 2  # two turns: the loop ended
    printed = capsys.readouterr().out
    first, second = printed.split("── Prompt as the chat template rendered it")[1:]
    assert '"name": "add"' in first and '"description": "the first number"' in first
    assert result_in_prompt in second and result_in_prompt not in first
    assert "✓ step 1 · add(a=2, b=3) → 5 · " in printed
    # The second turn reads only what is new: the first prompt and answer come from the cache.
    assert result.stats.cached_prompt_tokens > result.stats.prompt_tokens // 2
    assert result.request.tools.turns[-1]["content"] == "5"  # what %mlx replay sends again


def test_a_declined_call_is_told_to_the_model_and_does_not_run(tools_shell, capsys):
    from mlx_magic.magics.options import CellOptions
    from mlx_magic.magics.tool_loop import run_tools_cell
    from mlx_magic.testing.scripted import forced_answers

    asked = []
    tools_shell.user_ns["calls"].clear()
    options = CellOptions(tools="add", max_tokens=200, answer_format="text", show_prompt=True)
    with forced_answers(hermes_call("add", {"a": 2, "b": 3}), "I may not add."):
        run_tools_cell(
            magics_of(tools_shell).session,
            options,
            "What is 2 + 3?",
            decide=lambda step: asked.append(step.name) or False,
        )
    assert asked == ["add"] and tools_shell.user_ns["calls"] == []
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "skipped"
    printed = capsys.readouterr().out
    assert "The user declined this call; it did not run." in printed.split("rendered it")[2]


def test_a_function_not_offered_is_refused_and_the_model_told(tools_shell, capsys):
    tools_cell(tools_shell, "--tools add --auto", hermes_call("rm_rf", {"path": "/"}), "Sorry.")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "refused" and tools_shell.user_ns["calls"] == []
    printed = capsys.readouterr().out
    assert "✖ step 1 · rm_rf(path='/') → refused: no function 'rm_rf' is offered" in printed
    assert "Error: no function 'rm_rf' is offered (offered: add)" in printed


def test_arguments_that_do_not_fit_go_back_as_an_error_unrun(tools_shell, capsys):
    tools_cell(tools_shell, "--tools add --auto", hermes_call("add", {"a": "two", "b": 3}), "Oops.")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "invalid" and tools_shell.user_ns["calls"] == []
    assert "argument a: Input should be a valid integer" in step.error
    assert "Error: argument a: Input should be a valid integer" in capsys.readouterr().out


def test_a_call_may_leave_out_empty_arguments(tools_shell):
    run(tools_shell, 'def now() -> str:\n    """The time."""\n    return "noon"')
    call = '<tool_call>\n{"name": "now"}\n</tool_call>'
    tools_cell(tools_shell, "--tools now --auto", call, "It is noon.")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert (step.state, step.result) == ("ran", "noon")


def test_a_call_that_does_not_parse_goes_back_as_an_error(tools_shell):
    broken = '<tool_call>\n{"name": "add", "arguments": {"a": 2,\n</tool_call>'
    tools_cell(tools_shell, "--tools add --auto", broken, "Oops.")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "invalid" and "the call did not parse" in step.error


def test_an_exception_goes_back_as_one_line(tools_shell, capsys):
    tools_cell(tools_shell, "--tools add,fail --auto", hermes_call("fail", {"reason": "x"}), "No.")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert (step.state, step.error) == ("failed", "ValueError: no luck: x")
    assert "<tool_response>\nError: ValueError: no luck: x\n</tool_response>" in (
        capsys.readouterr().out
    )


def test_the_loop_stops_after_max_steps(tools_shell, capsys):
    # The model calls again after every result: only --max-steps ends it.
    tools_cell(
        tools_shell, "--tools add --auto --max-steps 2", hermes_call("add", {"a": 1, "b": 1})
    )
    assert tools_shell.user_ns["calls"] == [(1, 1), (1, 1)]
    assert [step.step for step in tools_shell.user_ns["_mlx"].steps] == [1, 2]
    assert "Stopped after 2 step(s) of calls" in capsys.readouterr().out


def test_a_call_past_tool_timeout_s_is_stopped_and_reported(tools_shell):
    run(tools_shell, "%config MLXMagics.tool_timeout_s = 0.5")
    run(
        tools_shell,
        "import threading, time\nstopped = threading.Event()\n"
        'def slow() -> str:\n    """Takes forever."""\n    try:\n        while True:\n'
        "            time.sleep(0.01)\n    finally:\n        stopped.set()\n",
    )
    try:
        tools_cell(tools_shell, "--tools add,slow --auto", hermes_call("slow", {}), "Too slow.")
    finally:
        run(tools_shell, "%config MLXMagics.tool_timeout_s = 60.0")
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "timed out" and "ran past 0.5 s" in step.error
    assert tools_shell.user_ns["stopped"].wait(30)  # stopped, as far as Python allows


def test_an_interrupt_during_a_call_stops_the_loop_and_keeps_the_steps(tools_shell):
    from mlx_magic.errors import GenerationInterrupted
    from mlx_magic.testing.scripted import forced_answers

    # The kernel's interrupt is a KeyboardInterrupt in the main thread: the
    # function sends one while it runs (on the helper thread).
    run(
        tools_shell,
        "import _thread\ninterrupted = threading.Event()\n"
        'def press_stop() -> str:\n    """Presses the stop button."""\n    try:\n'
        "        _thread.interrupt_main()\n        while True:\n            time.sleep(0.01)\n"
        "    finally:\n        interrupted.set()\n",
    )
    tools_shell.user_ns["calls"].clear()
    with forced_answers(hermes_call("add", {"a": 1, "b": 2}) + hermes_call("press_stop", {})):
        result = tools_shell.run_cell("%%mlx -n 200 --tools add,press_stop --auto\nGo.")
    assert isinstance(result.error_in_exec, GenerationInterrupted)
    steps = tools_shell.user_ns["_mlx"].steps
    assert [(step.name, step.state) for step in steps] == [
        ("add", "ran"),
        ("press_stop", "interrupted"),
    ]
    assert tools_shell.user_ns["interrupted"].wait(30)


def test_tools_in_a_conversation_are_turns_of_it_and_the_next_turn_reads_only_its_own(
    tools_shell, capsys
):
    from mlx_magic.testing.scripted import forced_answer

    tools_cell(tools_shell, "--tools add --auto -c sums", FAMILIES["hermes"][0], "It is 5.")
    conversation = magics_of(tools_shell).session.conversations.get("sums")
    assert [(turn.user, turn.assistant) for turn in conversation.turns] == [
        ("What is 2 + 3?", "It is 5.")
    ]
    call, result = conversation.turns[0].tool_turns  # the call and its result, between
    assert call["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert (result["role"], result["content"]) == ("tool", "5")
    capsys.readouterr()
    with forced_answer("Yes."):  # the next turn: the model sees what was called and found
        run(tools_shell, "%%mlx -n 20 -f text --tools add --auto -c sums\nWas that right?")
    follow_up = tools_shell.user_ns["_mlx"]
    sent = follow_up.request.chat_messages()
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    # The loop's last prompt and answer (the same functions offered) begin this one: cached.
    assert follow_up.stats.prompt_tokens - follow_up.stats.cached_prompt_tokens < 20
    # %mlx replay of the follow-up sends the same history, tool turns and all.
    import json

    from mlx_magic.magics.provenance import request_from_record

    record = json.loads(json.dumps(follow_up.provenance))  # as a saved notebook keeps it
    assert request_from_record(record).chat_messages() == sent
    saved = conversation.to_json()["turns"][0]["tool_turns"]
    assert type(conversation).from_json(conversation.to_json()).turns[0].tool_turns == tuple(saved)


SLOW = """
import threading
gate, entered = threading.Event(), threading.Event()
def slow(x: int) -> int:
    \"\"\"Waits for the gate, then answers x.

    Args:
        x: a number
    \"\"\"
    entered.set()
    while not gate.wait(0.05):  # back in Python often: a cancel can stop it
        pass
    calls.append((x,))
    return x
"""


def test_in_the_background_the_loop_goes_on_after_the_cell_returns(tools_shell, capsys):
    from mlx_magic.testing.scripted import forced_answers

    run(tools_shell, SLOW)
    tools_shell.user_ns["calls"].clear()
    session = magics_of(tools_shell).session
    with forced_answers(hermes_call("slow", {"x": 7}), "It is 7."):
        run(tools_shell, "%%mlx -n 200 -f text --tools slow --auto -b\nWhat is seven?")
        (entry,) = [job for job in session.jobs.all() if job.model == "--tools slow"]
        assert "[background job" in capsys.readouterr().out
        assert not entry.done.is_set() and tools_shell.user_ns["calls"] == []  # the call waits
        tools_shell.user_ns["gate"].set()
        run(tools_shell, f"%mlx wait {entry.id}")
    assert tools_shell.user_ns["calls"] == [(7,)]
    result = tools_shell.user_ns["_mlx"]
    assert result.text == "It is 7." and entry.result is result
    assert [(step.name, step.state, step.result) for step in result.steps] == [("slow", "ran", 7)]


def test_cancel_stops_a_background_loop_in_its_call_and_keeps_the_steps(tools_shell, capsys):
    from mlx_magic.testing.scripted import forced_answers

    run(tools_shell, SLOW)  # a new gate, not set
    tools_shell.user_ns["calls"].clear()
    session = magics_of(tools_shell).session
    with forced_answers(hermes_call("slow", {"x": 8}), "Never said."):
        run(tools_shell, "%%mlx -n 200 -f text --tools slow --auto -b\nWhat is eight?")
        entry = session.jobs.all()[-1]
        assert tools_shell.user_ns["entered"].wait(120)  # the call runs (an event, not a time)
        run(tools_shell, f"%mlx cancel {entry.id}")
        run(tools_shell, f"%mlx wait {entry.id}")
    assert "cancelled after step 1" in capsys.readouterr().out
    assert tools_shell.user_ns["calls"] == []  # stopped inside the call: it never returned
    (step,) = tools_shell.user_ns["_mlx"].steps
    assert step.state == "interrupted" and tools_shell.user_ns["_mlx"].text != "Never said."
    run(tools_shell, "%%mlx -n 3 -f text\nStill usable?")  # the runtime goes on


# ---- mistakes: one line each, and nothing else changes -------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("--tools nothing_here --auto", "--tools: the notebook has no 'nothing_here'"),
        ("--tools add --auto --max-steps 0", "--max-steps must be at least 1, not 0"),
        ("--max-steps 3", "--max-steps goes with --tools NAMES"),
        ("--tools add", "add --auto to run the model's calls without asking"),
        ("--tools starry --auto", "--tools: starry's parameter *numbers: int cannot be named"),
        ("--tools frame --auto", "--tools: a parameter type of frame has no JSON schema"),
        ("--tools len --auto", "--tools: len's parameter obj cannot be named in a JSON schema"),
        ("--tools number --auto", "--tools: number is a int, not a function"),
    ],
)
def test_each_mistake_is_one_line(tools_shell, line, expected):
    run(
        tools_shell,
        "import pandas\nnumber = 3\ndef starry(*numbers: int) -> int:\n    return 0\n"
        "def frame(df: pandas.DataFrame) -> int:\n    return 0\n",
    )
    tools_shell.user_ns["_mlx"] = before = object()
    with pytest.raises(UsageError) as caught:
        run(tools_shell, f"%%mlx {line}\nWhat is 2 + 3?")
    assert expected in one_line(caught)
    assert tools_shell.user_ns["_mlx"] is before


def test_a_model_without_tool_calling_is_one_line(tools_shell, tiny_llama):
    tools_shell.user_ns["_mlx"] = before = object()
    with pytest.raises(UsageError) as caught:
        run(tools_shell, f"%%mlx -m {tiny_llama} --tools add --auto\nWhat is 2 + 3?")
    assert "has no tool calling that mlx-lm knows" in one_line(caught)
    assert tools_shell.user_ns["_mlx"] is before


# ---- across the worker process's wire -------------------------------------------------


def test_tool_values_cross_the_worker_process_wire():
    import dataclasses

    from mlx_magic.runtime.process.rpc import decode, encode
    from mlx_magic.vocabulary.tools import ProposedCall, ToolCallsFound, ToolUse
    from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

    use = ToolUse(
        schemas=(
            {"type": "function", "function": {"name": "add", "parameters": {"required": ["a"]}}},
        ),
        turns=({"role": "tool", "content": "5", "tool_call_id": "call_1_0"},),
        show_prompt=True,
    )
    request = GenerationRequest(model=ModelSpec("m", "m", "/m"), prompt="hi", tools=use)
    assert decode(encode(request)) == request
    found = ToolCallsFound(calls=(ProposedCall("add", {"a": [1, 2]}, "text"),), content="ok")
    assert decode(encode(found)) == found
    assert dataclasses.asdict(decode(encode(found)))["calls"][0]["arguments"] == {"a": [1, 2]}


def test_the_worker_process_renders_the_tools_and_reads_the_calls(tool_models, capsys):
    # The worker generates (random weights: whatever it writes), and what it sends
    # back crosses the wire: the prompt it rendered with the tools, the calls it read.
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, "%config MLXMagics.runtime = 'process'")
        run(shell, f"%config MLXMagics.default_model = {str(tool_models['hermes'])!r}")
        run(shell, ADD)
        run(shell, "%%mlx -n 8 -f text --tools add --auto --show-prompt --max-steps 1\n2 + 3?")
        result = shell.user_ns["_mlx"]
        assert result.tool_calls is not None  # the engine's answer, decoded from the worker
        assert '"description": "the first number"' in capsys.readouterr().out
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_replay_makes_the_last_answer_again_with_its_tools_and_tool_turns(tools_shell):
    from mlx_magic.testing.scripted import forced_answers

    tools_cell(tools_shell, "--tools add --auto", FAMILIES["hermes"][0], "It is 5.")
    first = tools_shell.user_ns["_mlx"]
    assert first.provenance["request"]["tools"]["turns"][-1]["content"] == "5"
    with forced_answers("It is 5."):
        run(tools_shell, "%mlx replay")
    again = tools_shell.user_ns["_mlx"]
    assert again.stats.prompt_tokens == first.stats.prompt_tokens  # the same prompt, tools and all
    assert again.request.tools == first.request.tools


def test_probs_show_each_turn_s_tokens(tools_shell, capsys):
    tools_cell(tools_shell, "--tools add --auto --probs 3", FAMILIES["hermes"][0], "It is 5.")
    result = tools_shell.user_ns["_mlx"]
    assert result.steps[0].state == "ran"
    assert len(result.tokens[0].top) == 3  # the last turn's alternatives
    assert capsys.readouterr().out.count("Sampler: ") == 2  # one table of tokens per turn
