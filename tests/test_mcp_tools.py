"""``%mlx tools``: a tiny MCP server written with the ``mcp`` SDK runs over stdio;
its tools are offered with ``--tools`` and called from the tool loop."""

import sys
import threading

import pytest
from IPython.core.error import UsageError
from test_tools import hermes_call

from conftest import magics_of, make_shell, one_line, run

pytest.importorskip("mcp")

SERVER = '''
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("tiny")


@server.tool()
def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


@server.tool()
async def slow() -> str:
    """Takes a minute."""
    import asyncio

    await asyncio.sleep(60)
    return "late"


@server.tool()
def refuse(reason: str) -> str:
    """Always fails."""
    raise ToolError(f"refused: {reason}")


if __name__ == "__main__":
    server.run()
'''


@pytest.fixture(scope="module")
def mcp_shell(tmp_path_factory):
    from mlx_magic.testing.tiny_models import build_tiny_llama

    root = tmp_path_factory.mktemp("mcp")
    (root / "tiny_server.py").write_text(SERVER)
    model = build_tiny_llama(root / "hermes", tools="hermes")
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_model = {str(model)!r}")
    run(shell, "calls = []")
    shell.user_ns["server_command"] = f"{sys.executable} {root / 'tiny_server.py'}"
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_a_server_s_tools_are_listed_offered_and_called(mcp_shell, capsys):
    from mlx_magic.testing.scripted import forced_answers

    run(mcp_shell, "%mlx tools add $server_command")
    printed = capsys.readouterr().out
    assert "MCP server tiny_server: 3 tool(s) offered with --tools tiny_server" in printed
    assert "  multiply: Multiply two numbers." in printed
    call = hermes_call("multiply", {"a": 3, "b": 4})
    with forced_answers(call, "It is 12."):
        run(mcp_shell, "%%mlx -n 200 -f text --tools tiny_server --auto --show-prompt\n3 × 4?")
    (step,) = mcp_shell.user_ns["_mlx"].steps
    assert (step.name, step.state, step.result) == ("multiply", "ran", "12")
    printed = capsys.readouterr().out
    first, second = printed.split("rendered it")[1:]
    assert '"name": "refuse"' in first  # the server's schemas, as it listed them
    assert "<tool_response>\n12\n</tool_response>" in second
    # One tool by its name; the server's error goes back as one line; bad arguments are not sent.
    with forced_answers(hermes_call("refuse", {"reason": "no"}), "Oh."):
        run(mcp_shell, "%%mlx -n 200 -f text --tools refuse --auto\nTry.")
    (step,) = mcp_shell.user_ns["_mlx"].steps
    assert step.state == "failed" and "refused: no" in step.error
    with forced_answers(hermes_call("multiply", {"a": "x", "b": 4}), "Oh."):
        run(mcp_shell, "%%mlx -n 200 -f text --tools multiply --auto\nTry.")
    (step,) = mcp_shell.user_ns["_mlx"].steps
    assert step.state == "invalid" and "argument a: 'x' is not of type 'integer'" in step.error
    # A call past tool_timeout_s stops waiting for the server (the request is cancelled).
    run(mcp_shell, "%config MLXMagics.tool_timeout_s = 0.5")
    try:
        with forced_answers(hermes_call("slow", {}), "Oh."):
            run(mcp_shell, "%%mlx -n 200 -f text --tools slow --auto\nTry.")
    finally:
        run(mcp_shell, "%config MLXMagics.tool_timeout_s = 60.0")
    (step,) = mcp_shell.user_ns["_mlx"].steps
    assert step.state == "timed out" and step.seconds < 30
    assert not any(t.name == "mlx_magic-tool-slow" for t in threading.enumerate())  # stopped
    run(mcp_shell, "%mlx tools")
    assert "tiny_server (" in capsys.readouterr().out
    run(mcp_shell, "%mlx tools remove tiny_server")
    assert magics_of(mcp_shell).session.mcp_servers.servers == {}
    with pytest.raises(UsageError) as caught:
        run(mcp_shell, "%%mlx --tools multiply --auto\nTry.")
    assert "the notebook has no 'multiply'" in one_line(caught)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("%mlx tools add", "%mlx tools add COMMAND [ARG...]"),
        ("%mlx tools add no-such-command-here", "did not start as an MCP server"),
        (f"%mlx tools add {sys.executable} -c pass", "did not start as an MCP server"),
        ("%mlx tools remove nothing", "%mlx tools remove: no server 'nothing'"),
        ("%mlx tools start x", "%mlx tools start: add COMMAND..., remove NAME|all"),
    ],
)
def test_each_mcp_mistake_is_one_line(mcp_shell, line, expected):
    with pytest.raises(UsageError) as caught:
        run(mcp_shell, line)
    assert expected in one_line(caught)
    assert magics_of(mcp_shell).session.mcp_servers.servers == {}
