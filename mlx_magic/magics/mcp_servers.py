"""Model Context Protocol servers as tools (``%mlx tools add COMMAND...``).

A server is started over stdio with the ``mcp`` SDK's own client
(``mcp.Client`` with ``StdioServerParameters``), on an event loop of its own
in a helper thread that holds the connection open; its tools are listed once
and offered like notebook functions (``--tools NAME``: the server's name for
all of its tools, or one tool's name), their schemas as the server gives them,
the model's arguments checked against them (``jsonschema``) before a call.
A call waits for the server's answer from the tool loop's helper thread. The
servers end with ``%mlx tools remove``, with the extension, and with the
kernel (their stdin closes when it exits).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mlx_magic.errors import UserError, import_extra, one_line
from mlx_magic.magics.tools import OfferedTool

#: How long a server may take to start and list its tools, and to answer a call (s).
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 600.0
_STEP_S = 0.1


@dataclass
class MCPServer:
    """One running server: its name, command, tools, and the loop that holds it."""

    name: str
    command: list[str]
    tools: list[OfferedTool] = field(default_factory=list)
    loop: Optional[asyncio.AbstractEventLoop] = None
    client: Any = None
    stopped: Optional[asyncio.Event] = None
    held: Optional[Any] = None  # ends when the connection and the process have

    def call(self, tool: str, arguments: dict) -> Any:
        """Call one of its tools; its text (or structured) answer, or a
        ``RuntimeError`` holding the server's error."""
        import concurrent.futures

        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self.client.call_tool(tool, arguments), self.loop)
        # Waited for in short steps: the tool loop stops a call that runs past
        # tool_timeout_s with an exception raised in this thread, which lands
        # between them; the request is then cancelled on the server's loop.
        waited = 0.0
        while True:
            try:
                result = future.result(_STEP_S)
                break
            except concurrent.futures.TimeoutError:
                waited += _STEP_S
                if waited >= CALL_TIMEOUT_S:
                    future.cancel()
                    raise RuntimeError(
                        f"the server did not answer in {CALL_TIMEOUT_S:g} s"
                    ) from None
            except BaseException:
                future.cancel()
                raise
        texts = [getattr(part, "text", None) for part in result.content or []]
        text = "\n".join(t for t in texts if t is not None)
        if result.is_error:
            raise RuntimeError(text or "the server reported an error")
        if text:
            return text
        return result.structured_content

    def stop(self) -> None:
        if self.loop is None or self.stopped is None:
            return
        self.loop.call_soon_threadsafe(self.stopped.set)
        if self.held is not None:
            try:
                self.held.result(START_TIMEOUT_S)
            except Exception:  # noqa: BLE001, S110 - it is going away either way
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)


class MCPServers:
    """The servers one session started, by name."""

    def __init__(self) -> None:
        self.servers: dict[str, MCPServer] = {}

    def add(self, line: str) -> MCPServer:
        """Start the server ``line`` names (a command and its arguments) and list its tools.

        Raises:
            UserError: no command, or it did not start or list its tools (one line).
        """
        mcp = import_extra("mcp", "mcp", "%mlx tools add (MCP servers)")
        from mcp.client.stdio import StdioServerParameters, stdio_client

        try:
            command = shlex.split(line)
        except ValueError as error:
            raise UserError(f"%mlx tools add: the command does not parse ({error})") from error
        if not command:
            raise UserError("%mlx tools add COMMAND [ARG...]: the command that starts the server")
        name = _name_for(command, self.servers)
        server = MCPServer(name, command)
        parameters = StdioServerParameters(command=command[0], args=command[1:])
        # The server's log would go to the kernel's own stderr (no cell sees it).
        errlog = open(os.devnull, "w")  # noqa: SIM115 - closed with the connection
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name=f"mlx_magic-mcp-{name}", daemon=True).start()
        server.loop = loop
        ready: Any = None
        holding: list = []

        async def hold() -> None:
            server.stopped = asyncio.Event()
            try:
                async with mcp.Client(stdio_client(parameters, errlog)) as client:
                    server.client = client
                    listed = await client.list_tools()
                    ready.set_result(listed)
                    await server.stopped.wait()
            finally:
                errlog.close()

        async def start() -> Any:
            nonlocal ready
            ready = loop.create_future()
            task = asyncio.ensure_future(hold())
            holding.append(task)
            task.add_done_callback(
                lambda done: (
                    ready.done()
                    or ready.set_exception(done.exception() or RuntimeError("it ended"))
                )
            )
            return await ready

        try:
            listed = asyncio.run_coroutine_threadsafe(start(), loop).result(START_TIMEOUT_S)
        except BaseException as error:
            loop.call_soon_threadsafe(loop.stop)
            why = one_line(_cause(error), 200) or type(error).__name__
            raise UserError(
                f"%mlx tools add: {shlex.join(command)} did not start as an MCP server ({why}): "
                "check the command in a terminal"
            ) from None
        server.held = asyncio.run_coroutine_threadsafe(_until_closed(holding[0]), loop)
        server.tools = [_offered(server, tool) for tool in listed.tools]
        self.servers[name] = server
        return server

    def find(self, name: str) -> Optional[list[OfferedTool]]:
        """A server's tools by its name, or one tool by its name (``None``: neither)."""
        if name in self.servers:
            return list(self.servers[name].tools)
        for server in self.servers.values():
            for tool in server.tools:
                if tool.name == name:
                    return [tool]
        return None

    def remove(self, name: str) -> list[str]:
        names = list(self.servers) if name == "all" else [name]
        if any(each not in self.servers for each in names):
            known = ", ".join(self.servers) or "none is running"
            raise UserError(f"%mlx tools remove: no server {name!r} ({known})")
        for each in names:
            self.servers.pop(each).stop()
        return names

    def close(self) -> None:
        for server in list(self.servers.values()):
            server.stop()
        self.servers.clear()


async def _until_closed(task: Any) -> None:
    # A handle on the connection's end, the server's process ended (stop() waits for it).
    await task


def _cause(error: BaseException) -> str:
    """The innermost message of an error (the SDK wraps them in task groups)."""
    while getattr(error, "exceptions", None):  # an ExceptionGroup
        error = error.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _name_for(command: list[str], taken: dict) -> str:
    script = next((arg for arg in command[1:] if not arg.startswith("-")), command[0])
    base = Path(script).stem.replace("-", "_") or "server"
    name, number = base, 2
    while name in taken:
        name, number = f"{base}_{number}", number + 1
    return name


def _offered(server: MCPServer, tool: Any) -> OfferedTool:
    import jsonschema

    parameters = dict(tool.input_schema or {"type": "object", "properties": {}})
    schema = {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": parameters,
        },
    }
    validator = jsonschema.Draft202012Validator(parameters)

    def check(arguments: dict) -> dict:
        problem = next(iter(validator.iter_errors(arguments)), None)
        if problem is not None:
            where = ".".join(str(part) for part in problem.absolute_path)
            raise ValueError(f"argument {where}: {problem.message}" if where else problem.message)
        return arguments

    def call(**arguments: Any) -> Any:
        return server.call(tool.name, arguments)

    return OfferedTool(tool.name, call, schema, check, source=server.name)


def command_tools(host: Any, names: list[str]) -> None:
    """``%mlx tools`` as the command table calls it (``%%mlx`` passes the raw line instead)."""
    command_tools_line(host, shlex.join(names))


def command_tools_line(host: Any, line: str) -> None:
    """``%mlx tools [add COMMAND... | remove NAME|all]``: the MCP servers and their tools."""
    servers = host.session.mcp_servers
    action, _, rest = line.strip().partition(" ")
    if action == "add":
        server = servers.add(rest)
        print(
            f"MCP server {server.name}: {len(server.tools)} tool(s) offered with --tools {server.name}"
        )
    elif action == "remove":
        if not rest.strip():
            raise UserError("%mlx tools remove NAME|all: which server to stop")
        print(f"stopped: {', '.join(servers.remove(rest.strip()))}")
    elif action:
        raise UserError(f"%mlx tools {action}: add COMMAND..., remove NAME|all, or nothing to list")
    if not servers.servers:
        if not action:
            print("No MCP servers: %mlx tools add COMMAND [ARG...] starts one")
        return
    if action in ("", "add"):
        for server in servers.servers.values():
            print(f"{server.name} ({shlex.join(server.command)}):")
            for tool in server.tools:
                description = one_line(tool.schema["function"]["description"], 80)
                print(f"  {tool.name}: {description}" if description else f"  {tool.name}")
