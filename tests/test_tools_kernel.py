"""``%%mlx --tools`` in a real Jupyter kernel: ``--auto``, and the Run / Skip
buttons clicked as a frontend clicks them (a widget comm message, sent while
the cell waits)."""

import pytest
from test_tools import ADD, FAMILIES, SLOW, hermes_call

from kernel_helpers import execute, printed, running_kernel, stream_text

pytestmark = [pytest.mark.kernel]

CALL = FAMILIES["hermes"][0]


@pytest.fixture(scope="module")
def tools_kernel(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_llama

    folder = build_tiny_llama(tmp_path_factory.mktemp("tool-models") / "hermes", tools="hermes")
    with running_kernel(
        "%load_ext mlx_magic",
        "%config MLXMagics.default_format = 'text'",
        f"%config MLXMagics.default_model = {str(folder)!r}",
        ADD,
        "from mlx_magic.testing.scripted import forced_answers",
    ) as started:
        yield started


def scripted_cell(line, *answers):
    return (
        f"calls.clear()\nwith forced_answers(*{list(answers)!r}):\n"
        f"    get_ipython().run_cell_magic('mlx', {('-n 200 ' + line)!r}, 'What is 2 + 3?')"
    )


def step_lines(messages):
    return [
        m["content"]["data"]["text/plain"]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and "mlx-magic-step" in m["content"]["data"].get("text/html", "")
    ]


def test_auto_runs_the_call_in_the_kernel(tools_kernel):
    _, client = tools_kernel
    reply, messages = execute(
        client, scripted_cell("--tools add --auto", CALL, "It is 5."), timeout=300
    )
    assert reply["status"] == "ok", reply
    assert printed(client, "calls") == "[(2, 3)]"
    assert printed(client, "_mlx.text, _mlx.steps[0].state") == "It is 5. ran"
    assert step_lines(messages)[-1].startswith("[✓ step 1 · add(a=2, b=3) → 5 · ")


@pytest.mark.parametrize(
    "button, state, ran", [("Run", "ran", "[(2, 3)]"), ("Skip", "skipped", "[]")]
)
def test_a_click_on_run_or_skip_decides_while_the_cell_waits(tools_kernel, button, state, ran):
    _, client = tools_kernel
    buttons, clicked = {}, []

    def click(message):
        # The buttons' widget models arrive as comm_open messages; a person can
        # click once they are shown (a display of the widget view): click then.
        content = message["content"]
        if message["msg_type"] == "comm_open":
            description = content.get("data", {}).get("state", {}).get("description")
            buttons[description] = content["comm_id"]
        shown = "application/vnd.jupyter.widget-view+json" in content.get("data", {})
        if message["msg_type"] == "display_data" and shown and button in buttons and not clicked:
            clicked.append(buttons[button])
            data = {"method": "custom", "content": {"event": "click"}}
            client.shell_channel.send(
                client.session.msg("comm_msg", {"comm_id": buttons[button], "data": data})
            )

    reply, messages = execute(
        client, scripted_cell("--tools add", CALL, "Done."), on_message=click, timeout=300
    )
    assert reply["status"] == "ok", reply
    assert clicked
    assert printed(client, "calls") == ran
    assert printed(client, "_mlx.steps[0].state") == state
    lines = step_lines(messages)
    assert lines[0] == "[? step 1 · add(a=2, b=3) · waiting for Run or Skip]"
    assert ("→ 5 · " if state == "ran" else "skipped (the model is told") in lines[-1]


def test_what_a_call_prints_or_displays_shows_in_its_cell(tools_kernel):
    from kernel_helpers import displays, stream_text

    _, client = tools_kernel
    reply, _ = execute(
        client,
        "from IPython.display import HTML, display\ndef shout() -> str:\n"
        "    '''Shout.'''\n    print('hello from the tool')\n"
        "    display(HTML('<b>shown by the tool</b>'))\n    return 'done'",
    )
    assert reply["status"] == "ok"
    call = '<tool_call>\n{"name": "shout", "arguments": {}}\n</tool_call>'
    reply, messages = execute(
        client, scripted_cell("--tools shout --auto", call, "Done."), timeout=300
    )
    assert reply["status"] == "ok", reply
    # The call runs on a helper thread; its output still goes to the cell that called it.
    assert "hello from the tool" in stream_text(messages)
    assert any("shown by the tool" in shown.get("text/html", "") for shown in displays(messages))


def test_in_the_background_the_steps_land_in_the_cell_that_started_them(tools_kernel):
    """ipykernel routes output by the cell's parent message; the loop's thread keeps
    its cell's, so what it shows while another cell runs goes to its own cell."""
    _, client = tools_kernel
    execute(client, SLOW)
    started = (
        f"calls.clear()\n_forced = forced_answers({hermes_call('slow', {'x': 7})!r}, 'It is 7.')\n"
        "_forced.__enter__()\n"
        "get_ipython().run_cell_magic('mlx', '-n 200 --tools slow --auto -b', 'What is seven?')"
    )
    reply, first = execute(client, started, timeout=300)
    assert reply["status"] == "ok", reply
    assert "[background job" in stream_text(first)
    strays: list = []
    reply, second = execute(
        client,
        "entered.wait(120)\ngate.set()\nget_ipython().run_line_magic('mlx', 'wait')\n"
        "_forced.__exit__(None, None, None)",
        timeout=300,
        strays=strays,
    )
    assert reply["status"] == "ok", reply
    first_id = first[0]["parent_header"]["msg_id"]
    own = [m for m in strays if m["parent_header"].get("msg_id") == first_id]
    assert step_lines(own)[-1].startswith("[✓ step 1 · slow(x=7) → 7 · ")
    assert not step_lines(second)  # nothing of the loop in the cell that ran meanwhile
    assert printed(client, "calls, _mlx.text") == "[(7,)] It is 7."


def test_in_the_background_run_is_clicked_while_the_kernel_is_idle(tools_kernel):
    _, client = tools_kernel
    reply, first = execute(
        client,
        f"calls.clear()\n_forced = forced_answers({CALL!r}, 'Done.')\n_forced.__enter__()\n"
        "get_ipython().run_cell_magic('mlx', '-n 200 --tools add -b', 'What is 2 + 3?')",
        timeout=300,
    )
    assert reply["status"] == "ok", reply
    first_id = first[0]["parent_header"]["msg_id"]
    run_button = None
    while True:  # the loop's messages, after its cell ended, until Run is shown
        message = client.get_iopub_msg(timeout=300)
        content = message["content"]
        if message["msg_type"] == "comm_open":
            if content.get("data", {}).get("state", {}).get("description") == "Run":
                run_button = content["comm_id"]
        widget = "application/vnd.jupyter.widget-view+json" in content.get("data", {})
        if message["msg_type"] == "display_data" and widget and run_button:
            assert message["parent_header"]["msg_id"] == first_id  # in the cell that started it
            break
    data = {"method": "custom", "content": {"event": "click"}}
    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": run_button, "data": data}))
    reply, _ = execute(
        client, "get_ipython().run_line_magic('mlx', 'wait')\n_forced.__exit__(None, None, None)"
    )
    assert reply["status"] == "ok", reply
    assert printed(client, "calls, _mlx.text, _mlx.steps[0].state") == "[(2, 3)] Done. ran"
