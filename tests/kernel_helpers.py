"""Running cells in a real Jupyter kernel through jupyter_client, as a frontend does."""

import time
from contextlib import contextmanager

from jupyter_client.manager import start_new_kernel


@contextmanager
def running_kernel(*setup_cells, extra_env=None):
    """A started kernel (manager, client) with ``setup_cells`` already run."""
    kwargs = {"env": extra_env} if extra_env else {}
    manager, client = start_new_kernel(kernel_name="python3", **kwargs)
    try:
        for cell in setup_cells:
            reply, _ = execute(client, cell, timeout=300)
            assert reply["status"] == "ok", (cell, reply)
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client, code, timeout=120, on_message=None, cell_id=None, strays=None):
    """Run code; return (reply content, iopub messages of this execution).

    ``cell_id`` is sent in the request's metadata, as JupyterLab does; ``strays``
    (a list) collects the messages that came meanwhile for other cells.
    """
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    message = client.session.msg(
        "execute_request", content, metadata={"cellId": cell_id} if cell_id else {}
    )
    client.shell_channel.send(message)
    msg_id = message["header"]["msg_id"]
    messages = []
    deadline = time.monotonic() + timeout
    while True:
        iopub = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if iopub["parent_header"].get("msg_id") != msg_id:
            if strays is not None:
                strays.append(iopub)
            continue
        messages.append(iopub)
        if on_message:
            on_message(iopub)
        if iopub["msg_type"] == "status" and iopub["content"]["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=timeout)
    return reply["content"], messages


def stream_text(messages):
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def displays(messages):
    return [m["content"]["data"] for m in messages if m["msg_type"] == "display_data"]


def printed(client, expression):
    """What ``print(expression)`` shows in the kernel, stripped."""
    reply, messages = execute(client, f"print({expression})")
    assert reply["status"] == "ok", reply
    return stream_text(messages).strip()
